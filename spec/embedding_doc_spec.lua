-- docs/embedding.md: its C examples compile against this tree's libloom
-- (they are not run: the first listens on a fixed port, as a user's would).

local function sh(cmd)
  local h = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"status=$?\""))
  local out = h:read("a")
  h:close()
  local status = tonumber(out:match("status=(%d+)\n$"))
  return (out:gsub("status=%d+\n$", "")), status
end

-- The ```c blocks of the page, in order.
local function cBlocks()
  local f = assert(io.open("docs/embedding.md"))
  local text = f:read("a")
  f:close()
  local blocks = {}
  for code in text:gmatch("```c\n(.-)```") do
    blocks[#blocks + 1] = code
  end
  return blocks
end

-- Compiles (and links, when link) a C file against BUILD's libloom.a.
local function compile(code, link)
  local src = os.tmpname() .. ".c"
  local f = assert(io.open(src, "w"))
  f:write(code)
  f:close()
  local build = os.getenv("BUILD") or "build"
  local san = os.getenv("LOOM_SANITIZE") and "-fsanitize=address,undefined " or ""
  local cmd = string.format("cc %s-Wall -Wextra -Werror -Iinclude "
    .. "$(pkg-config --cflags lua5.4 libuv) %s %s %s", san,
    link and ("-o " .. src .. ".out") or "-c -o " .. src .. ".o", src,
    link and (build .. "/libloom.a $(pkg-config --libs lua5.4 libuv libcjson openssl) -lhttp_parser -lwslay -lm")
      or "")
  local out, status = sh(cmd)
  os.remove(src)
  os.remove(src .. ".o")
  os.remove(src .. ".out")
  return out, status
end

describe("docs/embedding.md", function()
  local blocks = cBlocks()

  it("has the complete example and the caller's-loop one", function()
    assert.is_true(#blocks >= 2)
    assert.matches("int main%(void%)", blocks[1])
  end)

  it("its complete example builds and links against libloom", function()
    local out, status = compile(blocks[1], true)
    assert.equal(0, status, out)
  end)

  it("its caller's-loop fragment compiles inside a function", function()
    local code = "#include <loom.h>\nvoid embed_on_my_loop(void);\n"
      .. "void embed_on_my_loop(void) {\n" .. blocks[2] .. "}\n"
    local out, status = compile(code, false)
    assert.equal(0, status, out)
  end)
end)
