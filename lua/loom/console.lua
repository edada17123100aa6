-- loom.console: `loom console WHERE`, the client of a server's manhole
-- (loom.manhole). WHERE is the manhole's socket path (or unix:PATH), or
-- tcp:HOST:PORT.
--
-- The manhole speaks lines and ends each answer with a prompt (">>> ",
-- "... ", or "password: " first on TCP). The console prints what comes
-- before the prompt, then reads the next line: with line editing and a
-- history (~/.loom_history) when standard input is a terminal and the
-- executable has loom.lineedit (cli/lineedit.c, over libedit), else as
-- plain lines, printing no prompts, so a script can pipe code in. The
-- password is read without echo. Ctrl-D (end of input) ends the session.

local manhole = require "loom.manhole"
local protocol = require "loom.protocol"

local M = {}

-- Seconds to wait for the connection to the manhole.
M.connectTimeout = 5
-- Lines kept in the history file.
local HISTORY = ".loom_history"

local USAGE = "usage: loom console PATH | unix:PATH | tcp:HOST:PORT"

-- How input is read: line editing on a terminal, plain lines otherwise.
local function newInput()
  local ok, lineedit = pcall(require, "loom.lineedit")
  local input = {}
  if ok and lineedit.isatty(0) then
    local home = os.getenv("HOME")
    local history = home and home ~= "" and (home .. "/" .. HISTORY) or nil
    if history then
      lineedit.loadHistory(history)
    end
    function input.line(prompt)
      local line = lineedit.readline(prompt)
      if line and line:find("%S") then
        lineedit.addHistory(line)
      end
      return line
    end
    input.password = lineedit.getpass
    function input.close()
      if history then
        lineedit.saveHistory(history)
      end
    end
    input.interactive = true
    return input
  end
  function input.line()
    return io.read("l")
  end
  function input.password()
    return io.read("l")
  end
  function input.close() end
  return input
end

-- The prompt that ends text (at its start or after a newline), and the
-- text before it; nil when text does not end in one.
local function splitPrompt(text)
  for _, p in ipairs({ manhole.PROMPT, manhole.MORE, manhole.PASSWORD }) do
    if text:sub(-#p) == p then
      local before = text:sub(1, -#p - 1)
      if before == "" or before:sub(-1) == "\n" then
        return p, before
      end
    end
  end
  return nil
end

local Console = protocol.Protocol:extend({ __name = "Console" })

function Console:init(input, done)
  self.input = input
  self.done = done
  self.pending = ""
  self.started = false
end

function Console:dataReceived(data)
  local text = self.pending .. data
  local prompt, before = splitPrompt(text)
  if prompt == nil then
    -- Print whole lines as they come (an await's output can take a while).
    local cut = text:match("^.*\n()")
    if cut then
      io.stdout:write(text:sub(1, cut - 1))
      io.stdout:flush()
      text = text:sub(cut)
    end
    self.pending = text
    return
  end
  self.pending = ""
  io.stdout:write(before)
  io.stdout:flush()
  self:answer(prompt)
end

-- Reads what the prompt asks for and sends it; end of input closes.
function Console:answer(prompt)
  local line
  if prompt == manhole.PASSWORD then
    line = self.input.password(prompt)
  else
    self.started = true
    line = self.input.line(self.input.interactive and prompt or nil)
  end
  if line == nil then
    if self.input.interactive then
      io.stdout:write("\n")
    end
    self.transport:loseConnection()
    return
  end
  self.transport:write(line .. "\n")
end

function Console:connectionLost()
  if self.pending ~= "" then
    io.stdout:write(self.pending, "\n")
  end
  io.stdout:flush()
  self.done(self.started and 0 or 1)
end

-- The connect call for WHERE: a function(factory), and a name for errors.
local function target(where, reactor)
  local host, port = where:match("^tcp:(.+):(%d+)$")
  if host then
    host = host:match("^%[(.*)%]$") or host
    return function(factory)
      reactor.connectTCP(host, tonumber(port), factory,
        { timeout = M.connectTimeout })
    end
  elseif where:match("^tcp:") then
    return nil, "console: " .. where .. " is not tcp:HOST:PORT"
  end
  local path = where:match("^unix:(.+)$") or where
  return function(factory)
    reactor.connectUNIX(path, factory, { timeout = M.connectTimeout })
  end
end

-- loom console WHERE: the exit status (0 once a session ran, 1 if it
-- could not connect or the password was refused).
function M.main(argv, first)
  local where = argv[first]
  if where == nil or where == "-h" or where == "--help" then
    io.stderr:write(USAGE, "\n")
    return where == nil and 1 or 0
  elseif argv[first + 1] ~= nil then
    io.stderr:write("loom: console: unexpected argument '", argv[first + 1],
      "' (", USAGE, ")\n")
    return 1
  end
  local reactor = require "loom.reactor"
  local connect, e = target(where, reactor)
  if not connect then
    io.stderr:write("loom: ", e, "\n")
    return 1
  end
  local status = 1
  local input = newInput()
  local factory = protocol.ClientFactory:new()
  function factory.buildProtocol()
    return Console:new(input, function(code)
      status = code
      reactor.stop()
    end)
  end
  function factory.clientConnectionFailed(_, _, reason)
    io.stderr:write(string.format("loom: console: cannot connect to %s: %s\n",
      where, reason:getErrorMessage()))
    reactor.stop()
  end
  connect(factory)
  reactor.run()
  input.close()
  return status
end

return M
