-- loom.reactor.internal: what loom.reactor shares with its transport
-- modules (the C hook table, safeCall, the lazy loom.defer, checkFactory).
-- Filled by loom.reactor before it loads them; not a public API.
return {}
