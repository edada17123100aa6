-- Application(name, {uid=, gid=}) and `loom --uid/--gid`: the host opens
-- its ports, then becomes that user and group, as twistd does. As root
-- (the test machine and CI) the switch itself is checked in
-- /proc/PID/status; the refusal without root runs the host as nobody.
local sub = dofile("spec/support/subprocess.lua")
local testing = require "loom.testing"
local core = require "loom.core"

local function readable(contents)
  local path = os.tmpname()
  sub.writeFile(path, contents)
  os.execute("chmod 644 " .. path) -- nobody must read it too
  return path
end

local ECHO_APP = [[
local application = require "loom.application"
local strports = require "loom.strports"
local protocol = require "loom.protocol"
local Echo = protocol.Protocol:extend({})
function Echo:dataReceived(d) self.transport:write(d) end
local app = application.Application("ids", OPTIONS)
strports.service("tcp:0:interface=127.0.0.1",
  protocol.Factory.forProtocol(Echo)):setServiceParent(app)
return app
]]

local function app(options)
  return readable((ECHO_APP:gsub("OPTIONS", options)))
end

local function loomPid(server)
  return tonumber(sub.readFile(string.format("/proc/%d/task/%d/children",
    server.pid, server.pid)):match("%d+"))
end

-- {uid, euid, suid, fsuid}, {gid, ...} and the supplementary groups.
local function identity(pid)
  local status = sub.readFile("/proc/" .. pid .. "/status")
  local function ids(field)
    local out = {}
    for n in status:match(field .. ":([^\n]*)"):gmatch("%d+") do
      out[#out + 1] = tonumber(n)
    end
    return out
  end
  return ids("Uid"), ids("Gid"), ids("Groups")
end

local function echoes(port)
  local c = sub.connect(port)
  c.transport:write("ping")
  c:waitFor("ping", true)
  c.transport:loseConnection()
  testing.runUntil(c.lost, 5)
end

local function idOf(what, name)
  local h = io.popen("id -" .. what .. " " .. name)
  local n = tonumber(h:read("l"))
  h:close()
  return n
end

local isRoot = idOf("u", "") == 0
local NOBODY = idOf("u", "nobody")
local NOBODY_GID = idOf("g", "nobody")

describe("Application {uid=, gid=}", function()
  local asRoot = isRoot and it or pending

  asRoot("as root: listens, then runs as uid=nobody (and its group),"
    .. " still serving", function()
      local path = app('{ uid = "nobody" }')
      local server = sub.start("run " .. path)
      local uids, gids, groups = identity(loomPid(server))
      echoes(server.port)
      local status, _, err = sub.stop(server)
      os.remove(path)
      assert.same({ NOBODY, NOBODY, NOBODY, NOBODY }, uids)
      assert.same({ NOBODY_GID, NOBODY_GID, NOBODY_GID, NOBODY_GID }, gids)
      assert.same({ NOBODY_GID }, groups) -- root's groups are gone
      assert.equal(0, status)
      assert.matches("info: set uid/gid " .. NOBODY .. "/" .. NOBODY_GID,
        err, 1, true)
    end)

  asRoot("--uid/--gid (numbers or names) override the Application's",
    function()
      local path = app('{ uid = "root", gid = 0 }')
      local server = sub.start("--uid " .. NOBODY .. " --gid=nogroup run "
        .. path)
      local uids, gids = identity(loomPid(server))
      echoes(server.port)
      local status = sub.stop(server)
      os.remove(path)
      assert.equal(NOBODY, uids[2])
      assert.equal(idOf("g", "nobody"), gids[2])
      assert.equal(0, status)
    end)

  asRoot("--uid on a plain script applies when it runs the reactor, its"
    .. " ports open", function()
      local server = sub.start("--uid nobody run examples/echo.lua 0")
      local uids = identity(loomPid(server))
      echoes(server.port)
      local status = sub.stop(server)
      assert.same({ NOBODY, NOBODY, NOBODY, NOBODY }, uids)
      assert.equal(0, status)
    end)

  it("an unknown user or group is one line and exit 1", function()
    local path = app('{ uid = "no-such-user-f6" }')
    local plain = app("nil")
    local out, err, status = sub.loom("run " .. path)
    local _, err2, status2 = sub.loom("--gid no-such-group-f6 run " .. plain)
    os.remove(path)
    os.remove(plain)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: no such user 'no-such-user-f6'\n", err)
    assert.equal(1, status2)
    assert.equal("loom: no such group 'no-such-group-f6'\n", err2)
  end)

  it("without root the switch is refused in one line, exit 1", function()
    local path = app("{ uid = 0, gid = 0 }")
    local prefix, script, loom, stage = "", "examples/echo.lua", sub.LOOM, nil
    if isRoot then
      -- setpriv(1) runs the host as nobody: the branch a user hits. nobody
      -- may not read this checkout (a clone under /root), so the host, its
      -- Lua files and the script run from a copy anyone can read.
      prefix = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
      stage = sub.tmpdir()
      assert(os.execute(string.format("mkdir %s/build && cp %s %s/build/loom"
        .. " && cp -R lua %s/lua && cp %s %s/echo.lua && chmod -R a+rX %s",
        stage, sub.LOOM, stage, stage, script, stage, stage)))
      sub.LOOM, script = stage .. "/build/loom", stage .. "/echo.lua"
    end
    local out, err, status = sub.loom("run " .. path, prefix)
    -- A plain script: the switch fails when it runs the reactor.
    local out2, err2, status2 = sub.loom("--uid 0 run " .. script .. " 0",
      prefix)
    sub.LOOM = loom
    if stage then
      os.execute("rm -rf " .. stage)
    end
    os.remove(path)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("loom: cannot switch to uid/gid 0/0: Operation not"
      .. " permitted (are you root?)\n", err)
    assert.equal(1, status2)
    assert.equal("", out2)
    assert.equal("loom: cannot switch to uid/gid 0/0: Operation not"
      .. " permitted (are you root?)\n", err2)
  end)
end)

describe("core.switchIdentity", function()
  it("needs a user or a group, each a name or a number", function()
    assert.has_error(function() core.switchIdentity() end,
      "switchIdentity: give a user, a group or both")
    assert.has_error(function() core.switchIdentity({}) end)
    local ok, errname, e = core.switchIdentity("no-such-user-f6")
    assert.is_nil(ok)
    assert.equal("ENOENT", errname) -- bindings/call.c's one convention
    assert.equal("no such user 'no-such-user-f6'", e)
  end)

  it("switching to who we already are is a no-op", function()
    local ok, e = core.switchIdentity(idOf("u", ""), idOf("g", ""))
    assert.is_true(ok)
    assert.matches("(already)", e, 1, true)
  end)
end)
