# loom: a Twisted-style network host in C (libuv) scripted in Lua 5.4.
#   make          build build/loom (the host) and build/loom.so (Lua module)
#   make run      build and start the demo server
#   make test     build and run every spec; ends with "N passed, M failed"
#   make sanitize the whole suite under ASan+UBSan
#   make soak     HTTP, WebSocket, TLS and the demo's plugins against hostile peers (ASan+UBSan)
#   make bench    loom beside raw libuv, luv, Node, Twisted, nginx (shared/bench),
#                 and hot reload's cost (make bench-reload: that alone)
#   make bench-embed  embedding alone: loom_step, the 30 Hz tick (bench/embed.sh)
#   make install  PREFIX=/usr/local (and DESTDIR); make uninstall
#   make deps     install missing Debian packages (as root)

PREFIX   ?= /usr/local
DATADIR  := $(PREFIX)/share/loom
# Where make install puts each file, once (docs/architecture.md).
BINDIR      = $(PREFIX)/bin
LIBDIR      = $(PREFIX)/lib
INCLUDEDIR  = $(PREFIX)/include/loom
LUADIR      = $(PREFIX)/share/lua/5.4
LUACDIR     = $(PREFIX)/lib/lua/5.4
PKGCONFDIR  = $(PREFIX)/lib/pkgconfig
VERSION  := 0.1.0
# libloom.so's soname: its major version (the ABI of include/loom.h).
SOMAJOR  := $(firstword $(subst ., ,$(VERSION)))
CC       ?= cc
PKGS     := lua5.4 libuv libcjson openssl
DEB_PKGS := gcc make pkg-config liblua5.4-dev lua5.4 libuv1-dev libcjson-dev \
            lua-busted libedit-dev libhttp-parser-dev python3-twisted curl \
            python3 libssl-dev openssl libwslay-dev python3-websockets
BUILD    ?= build

# The project's own flags live in FINAL_* (as Redis does), so a user's
# `make CFLAGS=-O0` adds to them instead of replacing them.  pkg-config is
# read by the sub-make that `all` starts after deps-check, so a first build
# on a bare machine sees the packages deps-check has just installed.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# libhttp-parser-dev and libwslay-dev ship no .pc file (bindings/http.c
# and bindings/websocket.c are their only users).
HTTP_LIBS  := -lhttp_parser -lwslay
OPT        ?= -O2 -g
# Every warning here passes with gcc and clang; docs/architecture.md says
# why the others (-Wconversion, -Wcast-qual, ...) are not on yet.
WARN       := -Wall -Wextra -Werror -Wpedantic -Wmissing-prototypes \
              -Wmissing-declarations -Wstrict-prototypes -Wold-style-definition \
              -Wshadow -Wpointer-arith -Wwrite-strings -Wformat=2 -Wundef \
              -Wvla -Wredundant-decls -Wnested-externs -Wdouble-promotion \
              -Winit-self -Wcast-qual
FINAL_CFLAGS  = $(OPT) -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) -fPIC $(PKG_CFLAGS) \
                -DLOOM_VERSION='"$(VERSION)"' -DLOOM_DATADIR='"$(DATADIR)"' $(CFLAGS)
FINAL_LDFLAGS = $(LDFLAGS)
FINAL_LIBS    = $(PKG_LIBS) $(HTTP_LIBS) -lm $(LDLIBS)

HOST_SRC := host/buf.c host/state.c host/stream.c host/listener.c host/tcp.c host/timer.c \
            host/signal.c host/unix.c host/udp.c host/process.c host/thread.c \
            host/resolver.c host/stdio.c host/fsevent.c host/tls.c host/tls_ctx.c
BIND_SRC := bindings/box.c bindings/call.c bindings/core.c bindings/embed.c bindings/stream.c bindings/listener.c \
            bindings/tcp.c \
            bindings/timer.c bindings/signal.c bindings/json.c \
            bindings/lines.c bindings/deferred.c bindings/deferred_api.c \
            bindings/unix.c \
            bindings/resolver.c bindings/udp.c bindings/process.c \
            bindings/thread.c bindings/pidfile.c \
            bindings/identity.c bindings/stdio.c bindings/fsevent.c \
            bindings/api.c bindings/api_lua.c bindings/api_thread.c \
            bindings/http.c bindings/http_server.c bindings/query.c \
            bindings/fs.c \
            bindings/websocket.c \
            bindings/tls.c
# Pure C parsers (no libuv, no Lua): tested by test/ and fuzzed by fuzz/.
PARSER_SRC := parsers/lines.c parsers/chunked.c
PARSER_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(PARSER_SRC))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(HOST_SRC) $(BIND_SRC)) $(PARSER_OBJ)
MAIN_OBJ := $(BUILD)/obj/cli/main.o $(BUILD)/obj/cli/lineedit.o
# libedit (line editing for `loom console`): the executable only.
EDIT_CFLAGS := $(shell pkg-config --cflags libedit 2>/dev/null)
EDIT_LIBS   := $(shell pkg-config --libs libedit 2>/dev/null)

LUA      := lua5.4
LUA_ENV  := LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
            LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"

TESTS    := $(BUILD)/test/host_test $(BUILD)/test/transports_test \
            $(BUILD)/test/stdio_test $(BUILD)/test/deferred_test \
            $(BUILD)/test/embed_test \
            $(BUILD)/test/lines_test $(BUILD)/test/lines_fuzz_replay \
            $(BUILD)/test/chunked_test $(BUILD)/test/chunked_fuzz_replay \
            $(BUILD)/test/tls_test

all: deps-check
	@$(MAKE) --no-print-directory binaries

binaries: $(BUILD)/loom $(BUILD)/loom.so $(BUILD)/libloom.a $(BUILD)/libloom.so $(TESTS)

$(BUILD)/obj/%.o: %.c host/internal.h bindings/binding.h include/loom.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(FINAL_CFLAGS) -c -o $@ $<

# The executable (cli/) is a program on top of the library: it sees only
# include/loom.h, and links libloom.a (statically: the executable does not
# depend on where libloom.so is installed).
$(BUILD)/obj/bindings/embed.o $(BUILD)/obj/bindings/api.o: bindings/embed.h
$(MAIN_OBJ) $(patsubst %.c,$(BUILD)/obj/%.o,bindings/api.c bindings/api_lua.c bindings/api_thread.c): \
  include/loom.h bindings/api.h
$(MAIN_OBJ): cli/lineedit.h
$(BUILD)/obj/cli/lineedit.o: FINAL_CFLAGS += $(EDIT_CFLAGS)
$(BUILD)/obj/bindings/http.o $(BUILD)/obj/bindings/http_server.o: bindings/http.h
$(BUILD)/obj/host/tls.o $(BUILD)/obj/host/tls_ctx.o $(BUILD)/obj/bindings/tls.o \
  $(BUILD)/test/tls_test: host/tls.h

$(BUILD)/loom: $(MAIN_OBJ) $(BUILD)/libloom.a
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS) $(EDIT_LIBS)

# C tests of host/ alone (no Lua); spec/run.sh runs every build/test/*.
$(BUILD)/test/%: test/%.c test/check.h $(patsubst %.c,$(BUILD)/obj/%.o,$(HOST_SRC))
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $(filter %.c %.o,$^) $(shell pkg-config --libs libuv openssl) -lm $(LDLIBS)

# The C entry points of bindings/ (with Lua; loom's Lua modules in lua/).
$(BUILD)/test/deferred_test $(BUILD)/test/embed_test: $(BUILD)/test/%: test/%.c test/check.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $(filter %.c %.o,$^) $(FINAL_LIBS)

# The parsers' tests: test/lines_test.c and test/chunked_test.c, and each
# fuzz harness replaying its checked-in corpus (fuzz/corpus/NAME) through
# fuzz/replay.c.
$(PARSER_OBJ) $(BUILD)/obj/bindings/lines.o: parsers/lines.h
$(PARSER_OBJ) $(BUILD)/obj/bindings/http.o: parsers/chunked.h

$(BUILD)/test/lines_test $(BUILD)/test/chunked_test: $(BUILD)/test/%: test/%.c test/check.h $(PARSER_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

$(BUILD)/test/%_fuzz_replay: fuzz/%_fuzz.c fuzz/replay.c fuzz/fuzz.h $(PARSER_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) \
	  -DLOOM_FUZZ_CORPUS='"$(CURDIR)/fuzz/corpus/$*"' -o $@ \
	  $(filter %.c %.o,$^) $(LDLIBS)

# The Lua C module: require "loom.core" / "loom.json" from a plain lua5.4.
$(BUILD)/loom.so: $(LIB_OBJ)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -shared -o $@ $^ $(shell pkg-config --libs libuv libcjson openssl) $(HTTP_LIBS) -lm $(LDLIBS)

# libloom for a C program that embeds loom (include/loom.h, loom.pc): the
# same objects as loom.so, as an archive and as a shared library whose
# soname carries the major version (libloom.so.0 -> libloom.so.0.1.0).
$(BUILD)/libloom.a: $(LIB_OBJ)
	@echo "  AR      $@"
	@rm -f $@
	@$(AR) rcs $@ $^

$(BUILD)/libloom.so.$(VERSION): $(LIB_OBJ)
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) $(FINAL_LDFLAGS) -shared -Wl,-soname,libloom.so.$(SOMAJOR) \
	  -o $@ $^ $(FINAL_LIBS)

$(BUILD)/libloom.so: $(BUILD)/libloom.so.$(VERSION)
	@ln -sf libloom.so.$(VERSION) $(BUILD)/libloom.so.$(SOMAJOR)
	@ln -sf libloom.so.$(SOMAJOR) $@

# Installs missing Debian packages as root; otherwise says what to run.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deps: installing$$missing"; \
	  (apt-get install -y --no-install-recommends $$missing || \
	   (apt-get update && apt-get install -y --no-install-recommends $$missing)) \
	   >/tmp/loom-deps.log 2>&1 || { tail -20 /tmp/loom-deps.log; exit 1; }; \
	else \
	  echo "make deps: missing packages; run: sudo apt-get install$$missing"; \
	  exit 1; \
	fi

# Quick when everything is there (dpkg -s per package), else runs deps.
deps-check:
	@(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || exit 1; done) \
	  || $(MAKE) --no-print-directory deps
	@if ! pkg-config --exists $(PKGS) libedit; then \
	  echo "make: pkg-config cannot find $(PKGS) libedit (run: make deps)"; exit 1; fi

# What make bench needs for its peers (raw libuv HTTP, Twisted, luv, Node,
# nginx with its Lua module) and wrk, the HTTP load generator.
bench-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="libhttp-parser-dev python3-twisted lua-luv nodejs wrk nginx libnginx-mod-http-lua"

# What spec/chat_e2e_spec.lua needs (the spec runs this when they are
# missing): a headless browser and its WebDriver.
chat-e2e-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="chromium chromium-driver"

run: all
	@$(BUILD)/loom run examples/demo_app.lua

test: all
	@$(LUA_ENV) sh spec/run.sh $(LUA)

# The specs run inside build-san/loom (loom test), an executable with ASan
# and UBSan linked in, so nothing is preloaded into a plain lua5.4. Leaks
# are valgrind's: LeakSanitizer's tracer was seen to deadlock with a loom
# exiting on SIGTERM (main.c blocks the signal, so timeout(1) cannot end it).
SAN_OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer

sanitize: all
	@$(MAKE) --no-print-directory deps DEB_PKGS=valgrind
	$(MAKE) BUILD=build-san OPT="$(SAN_OPT)" LDFLAGS="-fsanitize=address,undefined" all
	@LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
	  LUA_CPATH="$(CURDIR)/build-san/?.so;;" LOOM_BIN="$(CURDIR)/build-san/loom" \
	  BUILD=build-san LOOM_SANITIZE=1 \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  sh spec/run.sh $(LUA)
	@$(LUA_ENV) sh spec/valgrind.sh

bench: all bench-deps $(BUILD)/embed_bench
	@sh bench/run.sh
	@sh bench/reload_bench.sh
	@sh bench/embed.sh
	@LOOM_BIN=$(CURDIR)/$(BUILD)/loom sh bench/http_requests.sh

# The HTTP server's cost a request apart from the network, for wrk's
# request and for a browser's (bench/http_requests.sh; callgrind's counts
# with valgrind, which make sanitize installs).
bench-http-cost: all
	@LOOM_BIN=$(CURDIR)/$(BUILD)/loom sh bench/http_requests.sh
.PHONY: bench-http-cost

# Hot reload's latency and pause alone (bench/reload_bench.sh).
bench-reload: all
	@sh bench/reload_bench.sh

.PHONY: bench-reload

# The embedding part alone (loom_step's cost, the 30 Hz tick's lateness;
# with valgrind, which make sanitize installs, instruction counts too).
bench-embed: all $(BUILD)/embed_bench
	@sh bench/embed.sh
.PHONY: bench-embed

# A C program on libloom.a, as an embedder builds one (bench/embed_bench.c).
$(BUILD)/embed_bench: bench/embed_bench.c include/loom.h $(BUILD)/libloom.a
	@echo "  LINK    $@"
	@$(CC) $(FINAL_CFLAGS) -Iinclude -DEMBED_BENCH_TOP='"$(CURDIR)"' $(FINAL_LDFLAGS) \
	  -o $@ bench/embed_bench.c $(BUILD)/libloom.a $(FINAL_LIBS)

# libFuzzer with ASan+UBSan on each parser, FUZZ_SECONDS each, starting
# from a copy of the checked-in corpus (new inputs stay in build-fuzz/).
FUZZERS      := lines chunked
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

fuzz:
	@$(MAKE) --no-print-directory deps DEB_PKGS="clang libclang-rt-14-dev"
	@mkdir -p build-fuzz
	@set -e; for f in $(FUZZERS); do \
	  echo "  FUZZ    $$f ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ_CC) $(FUZZ_CFLAGS) -o build-fuzz/$${f}_fuzz fuzz/$${f}_fuzz.c \
	    fuzz/libfuzzer.c $(PARSER_SRC); \
	  mkdir -p build-fuzz/corpus/$$f; \
	  cp fuzz/corpus/$$f/* build-fuzz/corpus/$$f/; \
	  build-fuzz/$${f}_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=build-fuzz/$${f}- build-fuzz/corpus/$$f; \
	done

# Hostile peers, SOAK_SECONDS each, in the ASan+UBSan build: the HTTP
# server against mutated, pipelined, split and cut-off requests
# (fuzz/web_soak.lua), the client against a server answering so
# (fuzz/web_client_soak.lua), both WebSocket sides against bad frames
# (fuzz/websocket_soak.lua), TLS through a proxy that mangles the bytes
# (fuzz/tls_soak.lua), and the demo's plugins, echo, chat (and its page)
# and finger (fuzz/plugins_soak.lua). An invalid access aborts a soak; an
# error logged, a request or connection left unsettled, or a service that
# no longer works afterwards fails it.
SOAK_SECONDS ?= 60
SOAKS        := web_soak web_client_soak websocket_soak tls_soak plugins_soak

soak: all
	$(MAKE) BUILD=build-san OPT="$(SAN_OPT)" LDFLAGS="-fsanitize=address,undefined" all
	@set -e; for s in $(SOAKS); do \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    timeout $$(( $(SOAK_SECONDS) + 120 )) build-san/loom run fuzz/$$s.lua $(SOAK_SECONDS); \
	done

# examples/embed's C game servers, built as a user would: loom installed
# into a scratch prefix ($(BUILD)/embed/prefix), then pkg-config.
embed-examples: all
	@$(MAKE) --no-print-directory -C examples/embed BUILD=$(BUILD)

.PHONY: embed-examples

print-lua-paths:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"'

# Each file once. The Lua modules go where a plain lua5.4 finds them
# (share/lua/5.4); share/loom/lua is a relative link to that directory,
# so the loom executable (which looks in ../share/loom next to its bin/,
# cli/main.c) finds the same files, and the tree can be moved.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(LUADIR) $(DESTDIR)$(LUACDIR) $(DESTDIR)$(PKGCONFDIR) \
	  $(DESTDIR)$(DATADIR)/plugins
	install -m 755 $(BUILD)/loom $(DESTDIR)$(BINDIR)/loom
	install -m 644 $(BUILD)/libloom.a $(DESTDIR)$(LIBDIR)/libloom.a
	install -m 755 $(BUILD)/libloom.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libloom.so.$(VERSION)
	ln -sf libloom.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libloom.so.$(SOMAJOR)
	ln -sf libloom.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libloom.so
	install -m 644 include/loom.h $(DESTDIR)$(INCLUDEDIR)/loom.h
	install -m 755 $(BUILD)/loom.so $(DESTDIR)$(LUACDIR)/loom.so
	rm -rf $(DESTDIR)$(LUADIR)/loom
	cp -R lua/loom $(DESTDIR)$(LUADIR)/loom
	install -m 644 plugins/*.lua $(DESTDIR)$(DATADIR)/plugins/
	install -d $(DESTDIR)$(DATADIR)/plugins/chat
	install -m 644 plugins/chat/* $(DESTDIR)$(DATADIR)/plugins/chat/
	rm -rf $(DESTDIR)$(DATADIR)/lua
	ln -s ../lua/5.4 $(DESTDIR)$(DATADIR)/lua
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' loom.pc.in \
	  > $(DESTDIR)$(PKGCONFDIR)/loom.pc

# Removes what install put there (the directories loom owns, whole).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/loom $(DESTDIR)$(LIBDIR)/libloom.a \
	  $(DESTDIR)$(LIBDIR)/libloom.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libloom.so.$(SOMAJOR) \
	  $(DESTDIR)$(LIBDIR)/libloom.so \
	  $(DESTDIR)$(LUACDIR)/loom.so $(DESTDIR)$(PKGCONFDIR)/loom.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LUADIR)/loom $(DESTDIR)$(DATADIR)

clean:
	rm -rf build build-san build-fuzz

.PHONY: all binaries deps deps-check bench-deps chat-e2e-deps run test sanitize bench print-lua-paths install \
        uninstall clean fuzz soak
