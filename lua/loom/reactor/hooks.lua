-- loom.reactor.hooks: every call the C side (bindings/*.c) makes into Lua,
-- written down in one place. Not a public API.
--
-- Two kinds:
--  * hooks: functions C looks up by name in the one table given to
--    core.setHooks (loom__push_hook in bindings/call.c). This module makes
--    that table and installs it; the reactor's modules fill it
--    (`function hooks.accept(port, transport) ... end`), and a name not
--    listed in HOOKS below is refused, so this list stays complete.
--  * methods: C calls a protocol's (or producer's) method directly on the
--    hot path, with no hook in between; METHODS lists them.
-- A hook or method that raises is logged through hooks.error; on a
-- connection it then aborts only that connection (bindings/call.c).
-- Deferreds are separate: loom.defer hands its C core (bindings/deferred.c)
-- what it calls through core.bind.

local core = require "loom.core"
local failure = require "loom.failure"
local log = require "loom.log"

local M = {}

-- name -> "(arguments) where it comes from: what it means".
M.HOOKS = {
  error = "(where, value, traceback, transport?) -> Failure  call.c: a Lua"
    .. " error in any call from C; `where` names the hook or method;"
    .. " traceback may be nil; transport is the connection whose hook"
    .. " raised. The Failure returned is what its connectionLost receives",
  lost = "(transport, protocol, owner, kind, message, reason, connected)"
    .. "  stream.c, stdio.c: a stream closed. owner: its Port or Connector"
    .. " (nil for stdio); kind: done, aborted, error, shutdown,"
    .. " writeBufferFull or a libuv error name (ECONNRESET); message: the"
    .. " error text or nil; reason: the Failure of a hook error, or nil;"
    .. " connected: false when it never connected (a failed connect)",
  accept = "(port, transport)  stream.c: a listener accepted a connection;"
    .. " build and attach its protocol",
  connected = "(transport, connector, errname, message)  stream.c: a"
    .. " connect finished; errname and message are nil on success",
  acceptFailed = "(port, errname, message, dropped)  listener.c: accept(2)"
    .. " failed (EMFILE...); `dropped` waiting connections were closed",
  unixListenerClosed = "(port)  unix.c: a Unix listener closed and its"
    .. " socket file and lock are gone",
  udpClosed = "(port)  udp.c: a UDP socket closed",
  resolved = "(id, addresses, errname, message)  resolver.c: the lookup"
    .. " `id` ended: a list of address strings, or nil and the error",
  processEvent = "(transport, protocol, what, a, b)  process.c: what is"
    .. " \"fd\" (a: the child fd whose pipe closed), \"exited\" or"
    .. " \"ended\" (a: exit status, b: terminating signal, 0 for none)",
  ProcessExitedAlready = "(message) -> error value  process.c: the error"
    .. " transport:signalProcess raises once the process has exited",
  threadDone = "(id, ok, values, traceback)  thread.c: a worker's job"
    .. " ended; values: the results (ok) or {error value}",
  callFromThread = "()  thread.c: run the calls queued by callFromThread",
  tlsHandshake = "(transport, owner, code, message) -> Failure?  tls.c: a"
    .. " TLS handshake ended; code and message are nil when it succeeded,"
    .. " else why (code: unknownCA, expired, hostnameMismatch, ...). A"
    .. " Failure returned is what connectionLost receives",
}

-- Methods C calls on a protocol, transport owner or producer.
M.METHODS = {
  dataReceived = "(data)  stream.c, stdio.c: bytes read (the hot path)",
  makeConnection = "(transport)  stream.c (via hooks.accept), stdio.c",
  connectionMade = "()  stdio.c, when the protocol has no makeConnection",
  readConnectionLost = "()  stream.c: the peer shut down its side; without"
    .. " it, end of input closes the connection",
  pauseProducing = "()  stream.c: on the registered producer, when the"
    .. " write buffer passes its high-water mark",
  resumeProducing = "()  stream.c: on the producer, when it drained",
  stopProducing = "()  stream.c, stdio.c: on the producer, as the"
    .. " connection closes",
  handshakeCompleted = "()  tls.c (via hooks.tlsHandshake): the TLS"
    .. " handshake succeeded (Twisted's IHandshakeListener)",
  datagramReceived = "(data, address)  udp.c",
  connectionRefused = "()  udp.c: a connected UDP socket got ICMP refused",
  childDataReceived = "(fd, data)  process.c; else outReceived(data) for"
    .. " fd 1 and errReceived(data) for fd 2",
  ["timer function"] = "(arg)  timer.c: core.timer(fn, arg) fires",
  ["signal function"] = "(name)  signal.c: core.onSignal(name, fn)",
  ["watchPath function"] = "(filename, what)  fsevent.c:"
    .. " core.watchPath(path, fn) saw a change (loom.reload's watcher)",
  onHeaders = "(info) -> skipBody  http.c: on a core.httpParser's handler,"
    .. " from execute, when a message's head is complete (docs/web.md)",
  onBody = "(chunk)  http.c: body bytes, from execute",
  onMessageComplete = "()  http.c: a message ended, from execute/finish",
  messageReceived = "(message, isBinary)  websocket.c: on a WebSocket"
    .. " connection's wrappedProtocol, a whole message (the hot path)",
  write = "(data)  websocket.c: on a WebSocket connection's transport,"
    .. " the frames it sends",
  _pongReceived = "(data)  websocket.c: on a WebSocketConnection, a pong",
  _closeReceived = "(code, reason)  websocket.c: on a WebSocketConnection,"
    .. " the peer's close frame (code 0: none), after our answer was written",
  _failed = "(code)  websocket.c: on a WebSocketConnection, the peer broke"
    .. " the protocol; our close frame with code was written",
}

-- What the reactor delivers to a protocol (METHODS, and connectionLost
-- through hooks.lost) or to a factory: a live instance whose class a hot
-- reload patched runs its class's `upgrade(self)` before the first of
-- these it receives (loom.reload shadows them on the instance until then,
-- so no event pays anything once it has, or when none is pending).
M.EVENTS = { "dataReceived", "makeConnection", "connectionMade",
  "connectionLost", "readConnectionLost", "pauseProducing",
  "resumeProducing", "stopProducing", "datagramReceived",
  "connectionRefused", "childDataReceived", "childConnectionLost",
  "processExited", "processEnded", "buildProtocol", "doStart", "doStop" }

-- The table C holds; assigning a name not in HOOKS raises.
local hooks = setmetatable({}, {
  __newindex = function(t, name, f)
    if M.HOOKS[name] == nil then
      error(string.format("loom.reactor.hooks: '%s' is not a known hook"
        .. " (list it in HOOKS first)", tostring(name)), 2)
    end
    rawset(t, name, f)
  end,
})
M.hooks = hooks

-- Defined here, not by a part, so that it is there whenever the table is:
-- a Lua error in a hook is logged with its traceback and context, and C
-- gets the Failure that connectionLost will receive. Any error value is
-- reported, nil and one whose __tostring raises included.
function hooks.error(where, value, tb, transport)
  local f = failure.fromError(value, tb)
  local proto = transport and transport.protocol
  local mt = proto and getmetatable(proto)
  local name = type(mt) == "table" and rawget(mt, "__name") or nil
  local prefix = proto and log.prefixOf(proto) or nil
  local what = name and (name .. "." .. where) or where
  log.prefixed(prefix).err(f, "error in " .. what)
  return f
end

core.setHooks(hooks)

return M
