-- loom.basic.receiver: what the receivers of loom.basic share: the busy
-- guard of dataReceived, hooks a subclass must override, and pausing
-- (Twisted's _PauseableMixin).

local R = {}

-- Stands in for a missing transport (a protocol fed before makeConnection).
R.NO_TRANSPORT = { disconnecting = false }

-- Resets `_busyReceiving` when dataReceived is left, even by an error: a
-- to-be-closed value made once per protocol, so no allocation per call.
-- (LineReceiver has its own, which also ends a running batch.)
function R.busyGuard(self)
  local g = rawget(self, "_guard")
  if not g then
    g = setmetatable({}, {
      __close = function()
        self._busyReceiving = false
      end,
    })
    self._guard = g
  end
  return g
end

function R.abstract(class, method)
  return function()
    error(class .. "." .. method .. " must be overridden by a subclass", 2)
  end
end

-- Twisted's _PauseableMixin: pauseProducing, resumeProducing and
-- stopProducing for a receiver class. Each sets `paused`, calls
-- onChange(self) first when given (a running line loop must stop), and
-- passes the call on to the transport; resuming parses what was held.
function R.pausing(onChange)
  local function setPaused(self, paused, method)
    if onChange then
      onChange(self)
    end
    self.paused = paused
    local t = self.transport
    if t and t[method] then
      t[method](t)
    end
  end
  local function pauseProducing(self)
    setPaused(self, true, "pauseProducing")
  end
  local function resumeProducing(self)
    setPaused(self, false, "resumeProducing")
    self:dataReceived("")
  end
  local function stopProducing(self)
    setPaused(self, true, "stopProducing")
  end
  return pauseProducing, resumeProducing, stopProducing
end

return R
