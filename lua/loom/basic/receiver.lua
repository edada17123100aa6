-- loom.basic.receiver: what the receivers of loom.basic share: the busy
-- guard of dataReceived, hooks a subclass must override, and pausing
-- (Twisted's _PauseableMixin).

local R = {}

-- Stands in for a missing transport (a protocol fed before makeConnection).
R.NO_TRANSPORT = { disconnecting = false }

-- Resets `busy` when dataReceived is left, even by an error, after
-- running `onClose(self)` if given: a to-be-closed value made once per
-- protocol, so no allocation per call.
function R.busyGuard(self, onClose)
  local g = rawget(self, "_guard")
  if not g then
    g = setmetatable({}, {
      __close = function()
        if onClose then
          onClose(self)
        end
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
