-- A WebSocket echo server, with a page to try it from a browser:
--   GET /      a small HTML page whose script talks to /echo
--   WS  /echo  echoes every message (text stays text, bytes stay bytes)
--   loom run examples/web/websocket_echo.lua [PORT]   (default 8080; 0 picks one)
--   then open http://127.0.0.1:8080/ , or:
--   python3 -m websockets ws://127.0.0.1:8080/echo
-- Messages are at most 64 KiB here (the default is 1 MiB; a bigger one is
-- closed with 1009), and a peer that stops reading its echoes stops being
-- read (backpressure), so no client can make the server hold much.
local reactor = require "loom.reactor"
local protocol = require "loom.protocol"
local policies = require "loom.policies"
local web = require "loom.web"

local Echo = protocol.Protocol:extend({ __name = "WebSocketEcho" })

function Echo:connectionMade()
  self.echoed = 0
  policies.applyBackpressure(self)
end

function Echo:messageReceived(message, isBinary)
  -- false once the connection is closing (no frame may follow our close):
  -- the echo is dropped then.
  if self.transport:sendMessage(message, isBinary) then
    self.echoed = self.echoed + 1
  end
end

function Echo:connectionLost(reason)
  local v = reason.value
  print(string.format("%s left after %d echoes: close code %d%s",
    self.transport:getPeer().host, self.echoed, v.code,
    v.wasClean and "" or " (not clean)"))
  io.stdout:flush()
end

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>loom WebSocket echo</title>
<input id="text" value="hello" autofocus> <button id="send">send</button>
<pre id="log"></pre>
<script>
const log = (s) => { document.getElementById("log").textContent += s + "\n"; };
const ws = new WebSocket(`ws://${location.host}/echo`);
ws.onopen = () => log("open");
ws.onmessage = (e) => log("echo: " + e.data);
ws.onclose = (e) => log(`closed ${e.code} ${e.reason}`);
document.getElementById("send").onclick = () =>
  ws.send(document.getElementById("text").value);
</script>
]]

local Page = web.Resource:extend({ __name = "EchoPage", isLeaf = true })
function Page:render_GET(request)
  request:setHeader("Content-Type", "text/html; charset=utf-8")
  return PAGE
end

local root = web.Resource()
root:putChild("", Page())
root:putChild("echo", web.WebSocketResource(protocol.Factory.forProtocol(Echo),
  { maxMessageSize = 64 * 1024 }))

local port = reactor.listenTCP(tonumber(arg[1]) or 8080, web.Site(root),
  { interface = "127.0.0.1" })
reactor.callWhenRunning(function()
  print("listening on 127.0.0.1:" .. port:getHost().port)
  io.stdout:flush()
end)
reactor.run()
