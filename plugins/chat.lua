-- loom chat: a chat room. A new member is asked for a nickname; then
-- every line is sent to the others as "<nick> text". Commands:
-- /nick NAME, /who, /quit. Joins, leaves and renames are announced.
--
-- Members come two ways into the same room: a line protocol on --port (nc,
-- telnet), and, with --web, a browser: the page in plugins/chat/ (plain
-- HTML, JS and CSS) served over HTTP and a WebSocket at /ws where each
-- text message is a line (docs/chat.md). Both kinds go through the same
-- Member code, so nicknames, commands and limits are one set of rules.
--
-- Bounded against members who do not keep up or who flood: a member who
-- leaves more than --max-queue bytes unread is disconnected (logged), one
-- silent for --timeout seconds (no complete line) is disconnected, one
-- sending more than --rate lines a second has the excess refused, lines
-- (and browser messages) are at most 16384 bytes, and a member's own input
-- is not read while the answers to it are still queued.
--
-- Reloads cleanly (`loom chat --reload`, docs/reload.md): the room's state
-- (users) is on the factory instance, which a reload keeps; the classes
-- are returned under keys of their own; methods are looked up on self at
-- each call, and the timeout's pending call calls self:timeoutConnection()
-- when it fires, so an edit of any method reaches every member at once.
local application = require "loom.application"
local basic = require "loom.basic"
local endpoints = require "loom.endpoints"
local log = require "loom.log"
local policies = require "loom.policies"
local protocol = require "loom.protocol"
local reactor = require "loom.reactor"
local strports = require "loom.strports"
local trim = require("loom.strings").trim
local web = require "loom.web"

-- Defaults of --timeout, --max-queue and --rate.
local TIMEOUT = 600
local MAX_QUEUE = 1024 * 1024
local RATE = 10
-- The longest line (and browser message), LineReceiver's MAX_LENGTH.
local MAX_LINE = 16384

-- The page's files: plugins/chat/ next to this file.
local PAGE_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
  or ".") .. "/chat"

-- A run of non-ASCII bytes as valid UTF-8: each byte that does not start
-- a valid sequence becomes U+FFFD.
local function fixRun(run)
  if utf8.len(run) then
    return nil -- (gsub keeps it)
  end
  local out, i = {}, 1
  while true do
    local ok, bad = utf8.len(run, i)
    if ok then
      out[#out + 1] = run:sub(i)
      return table.concat(out)
    end
    out[#out + 1] = run:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
end

-- Text as valid UTF-8. A browser closes a WebSocket that sends it invalid
-- UTF-8 in a text message (RFC 6455 8.1), and a line member may type any
-- bytes at all. A lead byte and its continuations at a time: a line of
-- 16 KiB of 0xFF costs a few milliseconds, and is converted once.
local function toUtf8(s)
  if utf8.len(s) then
    return s
  end
  return (s:gsub("[\128-\255][\128-\191]*", fixRun))
end

-- A member's line as the room relays it: valid UTF-8, and no control
-- byte but TAB, as U+FFFD: a CR or an ANSI escape would let a line
-- overwrite its "<nick>" on a terminal and pass for another member's.
local function cleanLine(s)
  return (toUtf8(s):gsub("[%z\1-\8\10-\31\127]", "\u{FFFD}"))
end

-- Letters, digits and _-. (not first, so not "." or ".."), up to 32.
local function validNick(nick)
  return nick:match("^[%w_][%w_%-%.]*$") ~= nil and #nick <= 32
end

-- The member holding nick in any case ("alice" and "ALICE" would look
-- like one person), other than self.
local function holder(room, nick, self)
  local lower = nick:lower()
  for other, p in pairs(room.users) do
    if p ~= self and other:lower() == lower then
      return other
    end
  end
  return nil
end

-- Member: the room's rules, whatever carries the lines. A class mixing it
-- in provides _send(text) (one line out), _unread() (bytes sent but not
-- yet read by the peer) and _abort() (drop the connection now), and calls
-- _join() from connectionMade and _leave() from connectionLost.
local Member = {}

function Member:_join(room)
  self.room = room
  self.nick = nil
  policies.applyBackpressure(self)
  local secs = room.timeout
  if secs and secs > 0 then
    self:setTimeout(secs)
  end
  self:say("Welcome to the loom chat. What is your nickname?")
end

function Member:_leave()
  self:setTimeout(nil)
  local room = self.room
  if room and self.nick and room.users[self.nick] == self then
    room.users[self.nick] = nil
    room:broadcast("* " .. self.nick .. " has left", self)
  end
end

function Member:_name()
  return self.nick or "a member without a nickname"
end

-- A member whose unread text passes the room's maxQueue is dropped, once.
function Member:say(text)
  if self.dropped then
    return
  end
  self:_send(text)
  local limit = self.room.maxQueue
  if limit and limit > 0 and self:_unread() > limit then
    self.dropped = true
    log.prefixed(self:logPrefix()).warn("chat: disconnecting %s: more than"
      .. " %d bytes of chat left unread (--max-queue)", self:_name(), limit)
    self:_abort()
  end
end

function Member:timeoutConnection()
  log.prefixed(self:logPrefix()).info("chat: disconnecting %s: silent for"
    .. " %s s (--timeout)", self:_name(), tostring(self.timeOut))
  self:say("* disconnected: idle for too long")
  policies.TimeoutMixin.timeoutConnection(self)
end

-- Whether the room's rate lets one more line through: a token bucket of
-- `rate` lines a second holding at most 2 * rate (a pasted burst passes).
-- The first line refused in a row is answered, the rest are dropped
-- quietly, so a flood cannot make the room write as much back.
function Member:_allowed()
  local rate = self.room.rate
  if not rate or rate <= 0 then
    return true
  end
  local now, cap = self.room:seconds(), 2 * rate
  local tokens = math.min(cap, (self._tokens or cap)
    + (now - (self._tokensAt or now)) * rate)
  self._tokensAt = now
  if tokens >= 1 then
    self._tokens, self._refused = tokens - 1, nil
    return true
  end
  self._tokens = tokens
  if not self._refused then
    self._refused = true
    log.prefixed(self:logPrefix()).info("chat: %s sends more than %s lines"
      .. " a second (--rate): lines dropped", self:_name(), tostring(rate))
    self:say(string.format("* slow down: at most %s lines a second; lines"
      .. " dropped", tostring(rate)))
  end
  return false
end

function Member:_takeNick(nick)
  local room = self.room
  if not validNick(nick) then
    self:say("* '" .. nick .. "' is not a valid nickname (letters, digits,"
      .. " _-. up to 32), try another:")
    return false
  elseif holder(room, nick, self) then
    self:say("* the nickname '" .. holder(room, nick, self)
      .. "' is taken, try another:")
    return false
  end
  return true
end

function Member:lineReceived(line)
  self:resetTimeout()
  if not self:_allowed() then
    return
  end
  line = cleanLine((line:gsub("\r$", "")))
  local room = self.room
  if self.nick == nil then
    local nick = trim(line)
    if not self:_takeNick(nick) then
      return
    end
    self.nick = nick
    room.users[nick] = self
    local others = room:names(self)
    self:say(string.format("* hello %s! %s. Commands: /nick NAME, /who,"
      .. " /quit", nick, #others == 0 and "You are alone here"
      or ("Here: " .. table.concat(others, ", "))))
    room:broadcast("* " .. nick .. " has joined", self)
    return
  end
  local cmd, rest = line:match("^/(%S+)(.*)$")
  rest = rest and trim(rest)
  if cmd == nil then
    room:broadcast("<" .. self.nick .. "> " .. line, self)
  elseif cmd == "nick" then
    if self:_takeNick(rest) then
      local old = self.nick
      room.users[old] = nil
      room.users[rest] = self
      self.nick = rest
      self:say("* you are now " .. rest)
      room:broadcast("* " .. old .. " is now known as " .. rest, self)
    end
  elseif cmd == "who" then
    self:say("* here: " .. table.concat(room:names(), ", "))
  elseif cmd == "quit" then
    self.leaving = true
    self:say("* bye!")
    self.transport:loseConnection()
  else
    self:say("* unknown command /" .. cmd .. " (try /nick NAME, /who, /quit)")
  end
end

-- Chat: a member on the line protocol (--port).
local Chat = basic.LineReceiver:extend({ __name = "Chat", delimiter = "\n",
  MAX_LENGTH = MAX_LINE })
policies.mixin(Chat, Member, policies.TimeoutMixin)

function Chat:connectionMade()
  self:_join(self.factory)
end

function Chat:connectionLost()
  self:_leave()
end

-- Lines go out with CRLF (nc and telnet both show them right).
function Chat:_send(text)
  self.transport:write(text .. "\r\n")
end

function Chat:_unread()
  local t = self.transport
  return t.bufferedBytes and t:bufferedBytes() or 0
end

function Chat:_abort()
  self.transport:abortConnection()
end

-- A line longer than MAX_LENGTH: the member is told, it is logged, and
-- the connection is dropped (LineReceiver's default, silent otherwise).
function Chat:lineLengthExceeded(line)
  log.prefixed(self:logPrefix()).info("chat: disconnecting %s: a line"
    .. " longer than %d bytes", self:_name(), self.MAX_LENGTH)
  self:say(string.format("* disconnected: lines are at most %d bytes",
    self.MAX_LENGTH))
  return basic.LineReceiver.lineLengthExceeded(self, line)
end

-- WebChat: a member in a browser, over the WebSocket at /ws. Each text
-- message is one line (or several, split at "\n", as a line member
-- pasting them); each line the room says is one text message.
local WebChat = protocol.Protocol:extend({ __name = "WebChat",
  MAX_LENGTH = MAX_LINE })
policies.mixin(WebChat, Member, policies.TimeoutMixin)

function WebChat:connectionMade()
  self:_join(self.factory.room)
end

function WebChat:connectionLost()
  self:_leave()
end

function WebChat:_send(text)
  self.transport:sendMessage(toUtf8(text), false)
end

function WebChat:_unread()
  local t = self.transport
  return t.bufferedBytes and t:bufferedBytes() or 0
end

function WebChat:_abort()
  self.transport:abortConnection()
end

-- Messages are at most MAX_LENGTH bytes: the WebSocket layer closes with
-- 1009 past it (maxMessageSize, below) before holding more.
function WebChat:messageReceived(msg, isBinary)
  if isBinary then
    self:say("* only text messages are understood here")
    return
  end
  if msg:sub(-1) ~= "\n" then
    msg = msg .. "\n"
  end
  for line in msg:gmatch("(.-)\n") do
    if self.dropped or self.leaving then
      return
    end
    self:lineReceived(line)
  end
end

-- The room: its members by nickname, and the limits they share.
-- timeout: seconds of silence before a member is disconnected (0: never);
-- maxQueue: bytes of unread chat a member may have queued (0: no limit);
-- rate: lines a second a member may send (0: no limit); clock: where
-- seconds() comes from (the reactor; a task.Clock in specs).
local ChatFactory = protocol.ServerFactory:extend({ __name = "ChatFactory",
  protocol = Chat, timeout = TIMEOUT, maxQueue = MAX_QUEUE, rate = RATE })

function ChatFactory:init(opts)
  self.users = {}
  opts = opts or {}
  for _, k in ipairs({ "timeout", "maxQueue", "rate", "clock" }) do
    if opts[k] ~= nil then
      self[k] = opts[k]
    end
  end
end

function ChatFactory:seconds()
  local clock = self.clock
  if clock then
    return clock:seconds()
  end
  return reactor.seconds()
end

-- Sorted nicknames, without `except`.
function ChatFactory:names(except)
  local names = {}
  for nick, p in pairs(self.users) do
    if p ~= except then
      names[#names + 1] = nick
    end
  end
  table.sort(names)
  return names
end

function ChatFactory:broadcast(text, except)
  for _, p in pairs(self.users) do
    if p ~= except then
      p:say(text)
    end
  end
end

-- The factory of the WebSocket endpoint: builds WebChat members of `room`.
local WebChatFactory = protocol.ServerFactory:extend({
  __name = "WebChatFactory", protocol = WebChat })

function WebChatFactory:init(room)
  self.room = room
end

-- The site's root: /ws is the WebSocket, every other path a file of the
-- page's directory (web.File: nothing outside it is reachable), sent
-- with headers that keep the page to its own scripts and server.
local ChatRoot = web.Resource:extend({ __name = "ChatRoot" })

ChatRoot.headers = {
  ["Content-Security-Policy"] = "default-src 'none'; script-src 'self';"
    .. " style-src 'self'; connect-src 'self'; img-src 'self';"
    .. " base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  ["Referrer-Policy"] = "no-referrer",
  ["X-Frame-Options"] = "DENY",
}

function ChatRoot:init(room, dir)
  web.Resource.init(self)
  self.files = web.File(dir)
  self:putChild("ws", web.WebSocketResource(WebChatFactory:new(room),
    { maxMessageSize = WebChat.MAX_LENGTH }))
end

function ChatRoot:getChild(name, request)
  -- Give the segment back: File reads the whole rest of the path.
  table.remove(request.prepath)
  table.insert(request.postpath, 1, name)
  for k, v in pairs(self.headers) do
    request:setHeader(k, v)
  end
  return self.files
end

-- The page's Site for `room`, serving the files of `dir` (plugins/chat/).
local function chatSite(room, dir)
  return web.Site(ChatRoot:new(room, dir or PAGE_DIR))
end

local function isLoopback(host)
  return host == "::1" or host:match("^127%.") ~= nil
    or host:match("^::ffff:127%.") ~= nil
end

-- --web: a bare port number means loopback; a description is taken as
-- written (tcp:8080 is every interface, as Twisted), with a warning.
local function webDescription(value)
  if value:match("^%d+$") then
    return "tcp:" .. value .. ":interface=127.0.0.1"
  end
  local ep = endpoints.serverFromString(reactor, value)
  if ep.interface and not isLoopback(ep.interface) then
    log.warn("chat: the page is served on %s, not loopback only: whoever"
      .. " can reach this host can join the room", ep.interface)
  end
  return value
end

return {
  name = "chat",
  description = "chat room: nicknames, /nick, /who, /quit; lines go to"
    .. " everyone; --web adds a page for browsers",
  options = {
    { "port", "p", "tcp:8001:interface=127.0.0.1", "where to listen" },
    { "web", "w", nil, "also serve the chat page and its WebSocket there:"
      .. " a port number (on 127.0.0.1) or a description such as"
      .. " tcp:8080:interface=127.0.0.1; off unless given" },
    { "timeout", "t", TIMEOUT, "seconds a member may stay silent (no whole"
      .. " line) before being disconnected; 0: never" },
    { "max-queue", nil, MAX_QUEUE, "bytes of chat a member may leave unread"
      .. " before being disconnected; 0: no limit" },
    { "rate", nil, RATE, "lines a second a member may send (bursts of"
      .. " twice that); more are refused; 0: no limit" },
  },
  Chat = Chat,
  WebChat = WebChat,
  ChatFactory = ChatFactory,
  WebChatFactory = WebChatFactory,
  ChatRoot = ChatRoot,
  chatSite = chatSite,
  toUtf8 = toUtf8,
  PAGE_DIR = PAGE_DIR,
  makeService = function(opts)
    if opts.timeout < 0 then
      error("--timeout must be 0 or more seconds", 0)
    end
    if opts["max-queue"] < 0 then
      error("--max-queue must be 0 or more bytes", 0)
    end
    if (opts.rate or RATE) < 0 then
      error("--rate must be 0 or more lines a second", 0)
    end
    local room = ChatFactory:new({ timeout = opts.timeout,
      maxQueue = opts["max-queue"], rate = opts.rate })
    local lines = strports.service(opts.port, room)
    if (opts.web or "") == "" then
      return lines
    end
    local where = webDescription(opts.web)
    local index = io.open(PAGE_DIR .. "/index.html")
    if not index then
      error("--web: the chat page is missing (no " .. PAGE_DIR
        .. "/index.html)", 0)
    end
    index:close()
    -- Named, so an application can find each (the demo prints the web
    -- one's port, docs/chat.md).
    local both = application.MultiService()
    lines:setName("lines")
    lines:setServiceParent(both)
    local page = strports.service(where, chatSite(room))
    page:setName("web")
    page:setServiceParent(both)
    return both
  end,
}
