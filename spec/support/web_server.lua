-- Shared by the web server specs: a Site on a loopback port 0 that is
-- torn down in `finally`, raw clients, responses parsed with the response
-- parser, and real clients (curl, python3) run as child processes.
--   local W = dofile("spec/support/web_server.lua")
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local defer = require "loom.defer"
local core = require "loom.core"
local testing = require "loom.testing"
local web = require "loom.web"

local net = dofile("spec/support/net.lua")
local runUntil = testing.runUntil

local W = { net = net }

-- busted keeps one finally per spec: W.atEnd gathers the cleanups of one
-- spec (run last first) behind a single finally.
local pending = {}
function W.atEnd(f, finally)
  if #pending == 0 then
    finally(function()
      local list = pending
      pending = {}
      for i = #list, 1, -1 do
        list[i]()
      end
    end)
  end
  pending[#pending + 1] = f
end

-- serve(root, opts, finally) -> server {port=, site=, channels=, url(path)};
-- the port and every connection are closed when the spec ends (busted's
-- finally is passed in: it is not a global of this file).
function W.serve(root, opts, finally)
  local site = web.Site(root, opts)
  local channels = {}
  local build = site.buildProtocol
  function site:buildProtocol(addr)
    local p = build(self, addr)
    channels[#channels + 1] = p
    return p
  end
  local port = net.listen(site)
  local server = { port = port, site = site, channels = channels,
    portNumber = port:getHost().port }
  function server.url(path)
    return string.format("http://127.0.0.1:%d%s", server.portNumber, path or "/")
  end
  local clients = {}
  server.clients = clients
  W.atEnd(function()
    for _, c in ipairs(clients) do
      if c.transport and c.transport.connected then
        c.transport:abortConnection()
      end
    end
    for _, ch in ipairs(channels) do
      if ch.transport and ch.transport.connected then
        ch.transport:abortConnection()
      end
    end
    runUntil(port:stopListening())
  end, finally)
  return server
end

-- A connected raw client (net.Recorder): writes data if given.
function W.raw(server, data)
  local c = net.connect(server.port)
  server.clients[#server.clients + 1] = c
  runUntil(c.made)
  if data then
    c.transport:write(data)
  end
  return c
end

-- The responses in text: { {status=, phrase=, headers={lower=value},
-- rawHeaders=, body=, version=} ... }, and whether the text ended inside
-- one. heads: a set of response indexes that answer a HEAD (no body).
function W.responses(text, heads, closed)
  local list, current, parts = {}, nil, nil
  local handler = {}
  function handler:onHeaders(info)
    local h = {}
    for _, kv in ipairs(info.headers) do
      h[kv[1]:lower()] = kv[2]
    end
    current = { status = info.status, phrase = info.phrase, headers = h,
      rawHeaders = info.headers,
      version = info.versionMajor .. "." .. info.versionMinor }
    parts = {}
    if info.status == 100 then return true end
    return heads and heads[#list + 1] or false
  end
  function handler:onBody(chunk) parts[#parts + 1] = chunk end
  function handler:onMessageComplete()
    current.body = table.concat(parts)
    if current.status ~= 100 then
      list[#list + 1] = current
    end
  end
  local p = core.httpParser("response", handler)
  local n, errname, msg = p:execute(text)
  assert(n, msg and (errname .. ": " .. msg))
  if closed then
    assert(p:finish())
  end
  return list
end

-- Sends data on a new raw connection and waits until the server closes
-- it; returns the text and the responses.
function W.exchangeUntilClosed(server, data, timeout, heads)
  local c = W.raw(server, data)
  runUntil(c.lost, timeout or 5)
  return c:text(), W.responses(c:text(), heads, true), c
end

-- Waits until n complete responses arrived on raw client c.
function W.waitResponses(c, n, heads, timeout)
  net.waitFor(function()
    local ok, list = pcall(W.responses, c:text(), heads)
    return ok and #list >= n
  end, timeout or 5)
  return W.responses(c:text(), heads)
end

-- Runs argv as a child process; returns stdout, stderr, exit code.
local Proc = protocol.ProcessProtocol:extend({ __name = "WebSpecProc" })
function Proc:init()
  self.out, self.err = {}, {}
  self.ended = defer.Deferred()
end
function Proc:outReceived(d) self.out[#self.out + 1] = d end
function Proc:errReceived(d) self.err[#self.err + 1] = d end
function Proc:processEnded(reason)
  self.code = reason.value and reason.value.exitCode
  self.ended:callback(self)
end

function W.run(argv, timeout)
  local p = Proc:new()
  local t = reactor.spawnProcess(p, argv[1], argv)
  local ok, e = pcall(runUntil, p.ended, timeout or 15)
  if not ok then
    pcall(t.signalProcess, t, "KILL")
    runUntil(p.ended, 5)
    error(e, 0)
  end
  return table.concat(p.out), table.concat(p.err), p.code
end

function W.python(script, ...)
  return W.run({ "/usr/bin/python3", "-c", script, ... })
end

function W.curl(...)
  return W.run({ "/usr/bin/curl", "-sS", "--max-time", "10", ... })
end

-- A leaf resource whose render_METHOD functions are given as a table.
function W.leaf(methods)
  local R = web.Resource:extend({ __name = "SpecLeaf", isLeaf = true })
  for k, v in pairs(methods) do
    R[k] = v
  end
  return R()
end

return W
