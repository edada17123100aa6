-- make install / make uninstall into a temporary PREFIX, and what uses the
-- installed tree: the loom executable, a plain lua5.4, and a C program
-- built with `pkg-config --cflags --libs loom`.

-- Output and exit status of a shell command (stderr included).
local function sh(cmd)
  local h = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"status=$?\""))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), status
end

local function lines(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do
    t[#t + 1] = line
  end
  return t
end

-- make TARGET for this tree's build ($BUILD, as make test runs it), as a
-- new make: not the outer make's job server.
local function make(target, prefix)
  return sh(string.format(
    "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL BUILD=%s timeout 120 make -s %s PREFIX=%s DESTDIR=",
    os.getenv("BUILD") or "build", target, prefix))
end

-- Without the source tree's LUA_PATH/LUA_CPATH that make test sets.
local CLEAN_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_INIT -u LUA_INIT_5_4"

describe("make install", function()
  local prefix

  lazy_setup(function()
    prefix = (sh("mktemp -d")):gsub("%s+$", "") .. "/prefix"
    local text, status = make("install", prefix)
    assert.equal(0, status, text)
  end)

  lazy_teardown(function()
    if prefix then
      os.execute("rm -rf " .. prefix:gsub("/prefix$", ""))
    end
  end)

  it("copies each file once", function()
    local sources = #lines((sh("find lua/loom plugins -type f -name '*.lua'"
      .. " -o -type f -path 'plugins/chat/*'")))
    local files = lines((sh("cd " .. prefix .. " && find . -type f | sort")))
    -- loom, libloom.a, libloom.so.VERSION, loom.h, loom.so, loom.pc, the
    -- modules, the plugins (and the chat plugin's page)
    assert.equal(sources + 6, #files, table.concat(files, "\n"))
    local reactors = 0
    for _, f in ipairs(files) do
      if f:find("/loom/reactor.lua", 1, true) then
        reactors = reactors + 1
      end
    end
    assert.equal(1, reactors)
    assert.equal("../lua/5.4\n", (sh("readlink " .. prefix .. "/share/loom/lua")))
  end)

  it("gives the loom executable its modules and plugins", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write('require "loom.reactor"\n',
      'print(package.searchpath("loom.reactor", package.path))\n')
    f:close()
    local out, status = sh(string.format("cd / && %s %s/bin/loom run %s",
      CLEAN_ENV, prefix, script))
    os.remove(script)
    assert.equal(0, status, out)
    -- (bindings/embed.c names the root without "bin/..")
    assert.equal(prefix .. "/share/loom/lua/loom/reactor.lua\n", out)
    out, status = sh(string.format("%s %s/bin/loom --help", CLEAN_ENV, prefix))
    assert.equal(0, status, out)
    assert.matches("\n  echo ", out)
  end)

  it("gives a plain lua5.4 the Lua modules and loom.so", function()
    -- The one place a sanitized build needs its runtime preloaded: a plain
    -- lua5.4 loading a sanitized loom.so.
    local preload = os.getenv("LOOM_SANITIZE") and "LD_PRELOAD=\"$(cc"
      .. " -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)\""
      .. " ASAN_OPTIONS=detect_leaks=0" or ""
    local out, status = sh(string.format(
      "%s %s LUA_PATH='%s/share/lua/5.4/?.lua;;' LUA_CPATH='%s/lib/lua/5.4/?.so;;'"
        .. " lua5.4 -e 'local _, from = require \"loom.core\";"
        .. " require \"loom.reactor\"; print(from)'", CLEAN_ENV, preload,
        prefix, prefix))
    assert.equal(0, status, out)
    assert.equal(prefix .. "/lib/lua/5.4/loom.so\n", out)
  end)

  it("installs libloom.so with its soname and links", function()
    local lib = prefix .. "/lib/"
    local version = (sh("sed -n 's/^VERSION *:= *//p' Makefile")):gsub("%s+$", "")
    local major = version:match("^(%d+)%.")
    assert.equal("libloom.so." .. major .. "\n", (sh("readlink " .. lib .. "libloom.so")))
    assert.equal("libloom.so." .. version .. "\n",
      (sh("readlink " .. lib .. "libloom.so." .. major)))
    local dyn = sh("readelf -d " .. lib .. "libloom.so." .. version)
    assert.matches("Library soname: [libloom.so." .. major .. "]", dyn, 1, true)
    -- The header's version is the library's.
    local header = sh("grep '#define LOOM_VERSION \"' " .. prefix .. "/include/loom/loom.h")
    assert.matches('"' .. version .. '"', header, 1, true)
    -- The executable has libloom linked in (static), not loaded.
    local needed = sh("readelf -d " .. prefix .. "/bin/loom")
    assert.is_nil(needed:find("libloom", 1, true), needed)
  end)

  it("writes a loom.pc that builds a C program against libloom", function()
    local pc = "PKG_CONFIG_PATH=" .. prefix .. "/lib/pkgconfig "
    local flags, status = sh(pc .. "pkg-config --cflags --libs loom")
    assert.equal(0, status, flags)
    assert.matches("-I" .. prefix .. "/include/loom", flags, 1, true)
    assert.matches("-L" .. prefix .. "/lib -lloom", flags, 1, true)
    assert.matches("-luv", flags, 1, true)
    local exe = prefix .. ".embed"
    -- A sanitized libloom needs its runtime in the program too.
    local san = os.getenv("LOOM_SANITIZE") and "-fsanitize=address,undefined " or ""
    local out
    out, status = sh(string.format(
      -- uv.h needs POSIX's types, which strict ISO C (-std=c11) hides.
      "cc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror %s-o %s spec/fixtures/embed.c $(%s pkg-config --cflags --libs loom)",
      san, exe, pc))
    assert.equal(0, status, out)
    -- Found at run time through LD_LIBRARY_PATH (docs/embedding.md); its
    -- Lua files next to the library (no LUA_PATH, run from elsewhere).
    local lua = [[
      local reactor = require "loom.reactor"
      reactor.callLater(0, function()
        print(require("loom.json").encode({ ran = true }),
          package.searchpath("loom.reactor", package.path))
        reactor.stop()
      end)
      reactor.run()]]
    out, status = sh(string.format("cd / && %s LD_LIBRARY_PATH=%s/lib %s %q",
      CLEAN_ENV, prefix, exe, lua))
    assert.equal(0, status, out)
    assert.equal('{"ran":true}\t' .. prefix .. "/share/loom/lua/loom/reactor.lua\n", out)
    -- Or with the library's directory as the program's rpath.
    out, status = sh(string.format(
      "cc %s-o %s.rpath spec/fixtures/embed.c $(%s pkg-config --cflags --libs loom)"
        .. " -Wl,-rpath,$(%s pkg-config --variable=libdir loom)", san, exe, pc, pc))
    assert.equal(0, status, out)
    out, status = sh(string.format("cd / && %s %s.rpath %q", CLEAN_ENV, exe,
      "print(require('loom').version)"))
    os.remove(exe)
    os.remove(exe .. ".rpath")
    assert.equal(0, status, out)
    assert.equal(require("loom").version .. "\n", out)
  end)

  it("stages under DESTDIR a tree that names PREFIX", function()
    local stage = prefix .. ".stage"
    local text, status = sh(string.format(
      "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL BUILD=%s timeout 120 make -s install PREFIX=/opt/loom DESTDIR=%s",
      os.getenv("BUILD") or "build", stage))
    assert.equal(0, status, text)
    assert.is_true(os.execute("test -x " .. stage .. "/opt/loom/bin/loom"))
    local pc = (sh("cat " .. stage .. "/opt/loom/lib/pkgconfig/loom.pc"))
    os.execute("rm -rf " .. stage)
    assert.matches("\nprefix=/opt/loom\n", "\n" .. pc)
  end)

  it("is undone by make uninstall", function()
    local text, status = make("uninstall", prefix)
    assert.equal(0, status, text)
    assert.equal("", (sh("cd " .. prefix .. " && find . -type f -o -type l")))
  end)
end)
