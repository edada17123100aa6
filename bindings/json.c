/*
** json.c: loom.json on cJSON. encode(v) -> string; decode(s) -> value, or
** nil and a message naming the position. json.null stands for JSON null.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "binding.h"

#define MAX_DEPTH 1000

static int is_null(lua_State *L, int idx) {
  return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL;
}

/* A table is an array when its keys are exactly 1..n (and n > 0). */
static int array_length(lua_State *L, int idx) {
  lua_Integer n = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      lua_pop(L, 1);
      return -1;
    }
    if (lua_tointeger(L, -1) > max)
      max = lua_tointeger(L, -1);
    n++;
  }
  return (n > 0 && n == max) ? (int)n : -1;
}

/*
** Encoding builds a cJSON tree while it reads Lua values, and reading may
** raise (out of memory): so every node is attached to its parent before
** anything else can raise, the whole tree stays reachable from the one
** holder that l_encode frees, and the building runs under lua_pcall.
*/
static cJSON *to_json(lua_State *L, int idx, const char **err);

/* Adds item to node (an array when key is NULL); frees item on failure. */
static int attach(cJSON *node, const char *key, cJSON *item) {
  if (item == NULL)
    return 0;
  if (key == NULL ? cJSON_AddItemToArray(node, item)
                  : cJSON_AddItemToObject(node, key, item))
    return 1;
  cJSON_Delete(item);
  return 0;
}

static cJSON *add_json(lua_State *L, cJSON *parent, const char *key,
                       int idx, int depth, const char **err);

/* Fills node, already attached to its parent, from the table at idx. */
static int fill_table(lua_State *L, cJSON *node, int n, int idx, int depth,
                      const char **err) {
  int i;
  if (n >= 0) {
    for (i = 1; i <= n; i++) {
      cJSON *item;
      lua_geti(L, idx, i);
      item = add_json(L, node, NULL, lua_gettop(L), depth + 1, err);
      lua_pop(L, 1);
      if (item == NULL)
        return 0;
    }
    return 1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) { /* key at -2, value at -1 */
    int kt = lua_type(L, -2);
    size_t klen = 0;
    const char *k = kt == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
      *err = "table keys must be strings or numbers";
    else if (k != NULL && memchr(k, '\0', klen) != NULL)
      *err = "a table key holds a NUL byte";
    else {
      lua_pushvalue(L, -2); /* Stringify a copy: lua_next needs the key. */
      k = lua_tostring(L, -1);
      if (add_json(L, node, k, lua_gettop(L) - 1, depth + 1, err) != NULL) {
        lua_pop(L, 2);
        continue;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return 0;
  }
  return 1;
}

/*
** Makes the node for the value at idx and attaches it to parent under key
** (NULL: appended); a table is attached first, then filled. NULL on
** failure with *err set (or NULL for out of memory).
*/
static cJSON *add_json(lua_State *L, cJSON *parent, const char *key,
                       int idx, int depth, const char **err) {
  cJSON *node;
  int n;
  if (lua_type(L, idx) != LUA_TTABLE) {
    node = to_json(L, idx, err);
    return attach(parent, key, node) ? node : NULL;
  }
  if (depth > MAX_DEPTH) {
    *err = "nesting too deep (a cycle?)";
    return NULL;
  }
  if (!lua_checkstack(L, 4)) {
    *err = "nesting too deep";
    return NULL;
  }
  n = array_length(L, idx);
  node = n >= 0 ? cJSON_CreateArray() : cJSON_CreateObject();
  if (!attach(parent, key, node))
    return NULL;
  return fill_table(L, node, n, idx, depth, err) ? node : NULL;
}

/*
** A string holding NUL bytes, which cJSON (C strings) would cut short:
** escaped here and handed to cJSON as raw text. Returns NULL on ENOMEM.
*/
static cJSON *string_with_nuls(const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  char *out = malloc(len * 6 + 3), *o = out;
  cJSON *node;
  size_t i;
  if (out == NULL)
    return NULL;
  *o++ = '"';
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
    } else if (c < 0x20) {
      memcpy(o, "\\u00", 4);
      o[4] = hex[c >> 4];
      o[5] = hex[c & 15];
      o += 6;
    } else {
      *o++ = (char)c;
    }
  }
  *o++ = '"';
  *o = '\0';
  node = cJSON_CreateRaw(out);
  free(out);
  return node;
}

/*
** The shortest of %.15g..%.17g that reads back exactly: cJSON's own check
** has a tolerance, so 0.1 + 0.2 would come out as 0.3.
*/
static cJSON *number_node(double d) {
  char text[40];
  int prec;
  for (prec = 15; prec <= 17; prec++) {
    snprintf(text, sizeof(text), "%.*g", prec, d);
    if (strtod(text, NULL) == d)
      break;
  }
  return cJSON_CreateRaw(text);
}

/* A value other than a table; NULL on failure with *err set (or NULL for
** out of memory). */
static cJSON *to_json(lua_State *L, int idx, const char **err) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return cJSON_CreateNull();
  case LUA_TBOOLEAN:
    return cJSON_CreateBool(lua_toboolean(L, idx));
  case LUA_TNUMBER: {
    double d = lua_tonumber(L, idx);
    if (lua_isinteger(L, idx)) {
      /* Raw digits: cJSON would print a double and round big integers. */
      char digits[32];
      snprintf(digits, sizeof(digits), LUA_INTEGER_FMT,
               (LUAI_UACINT)lua_tointeger(L, idx));
      return cJSON_CreateRaw(digits);
    }
    if (isfinite(d))
      return number_node(d);
    *err = "cannot encode NaN or infinity";
    return NULL;
  }
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(L, idx, &len);
    if (memchr(str, '\0', len) != NULL)
      return string_with_nuls(str, len);
    return cJSON_CreateString(str);
  }
  case LUA_TLIGHTUSERDATA:
    if (is_null(L, idx))
      return cJSON_CreateNull();
    *err = "cannot encode a light userdata";
    return NULL;
  case LUA_TFUNCTION:
    *err = "cannot encode a function";
    return NULL;
  case LUA_TTHREAD:
    *err = "cannot encode a coroutine";
    return NULL;
  default:
    *err = "cannot encode a userdata";
    return NULL;
  }
}

typedef struct encode_args {
  cJSON *holder; /* an array whose one item is the root */
  const char *err;
} encode_args;

static int build_protected(lua_State *L) {
  encode_args *a = lua_touserdata(L, 1);
  lua_pushboolean(L, add_json(L, a->holder, NULL, 2, 0, &a->err) != NULL);
  return 1;
}

static int l_encode(lua_State *L) {
  encode_args a;
  cJSON *root;
  char *text;
  int status, ok;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  a.err = NULL;
  if ((a.holder = cJSON_CreateArray()) == NULL)
    return luaL_error(L, "json.encode: out of memory");
  lua_pushcfunction(L, build_protected);
  lua_pushlightuserdata(L, &a);
  lua_pushvalue(L, 1);
  status = lua_pcall(L, 2, 1, 0);
  ok = status == LUA_OK && lua_toboolean(L, -1);
  root = ok ? cJSON_DetachItemFromArray(a.holder, 0) : NULL;
  cJSON_Delete(a.holder); /* Freed before anything can raise. */
  if (status != LUA_OK)
    return lua_error(L);
  if (root == NULL) {
    if (a.err == NULL)
      return luaL_error(L, "json.encode: out of memory");
    return luaL_error(L, "json.encode: %s", a.err);
  }
  text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root); /* Freed before anything can raise. */
  if (text == NULL)
    return luaL_error(L, "json.encode: out of memory");
  lua_pushstring(L, text);
  cJSON_free(text);
  return 1;
}

static void push_json(lua_State *L, const cJSON *node);

static void push_container(lua_State *L, const cJSON *node) {
  const cJSON *item;
  lua_Integer i = 1;
  luaL_checkstack(L, 4, "json.decode: nesting too deep");
  lua_createtable(L, 0, 0);
  for (item = node->child; item != NULL; item = item->next) {
    push_json(L, item);
    if (cJSON_IsArray(node))
      lua_seti(L, -2, i++);
    else
      lua_setfield(L, -2, item->string);
  }
}

static void push_json(lua_State *L, const cJSON *node) {
  if (cJSON_IsNull(node)) {
    lua_pushlightuserdata(L, NULL);
  } else if (cJSON_IsBool(node)) {
    lua_pushboolean(L, cJSON_IsTrue(node));
  } else if (cJSON_IsNumber(node)) {
    double d = node->valuedouble;
    if (d == floor(d) && fabs(d) < 9007199254740992.0)
      lua_pushinteger(L, (lua_Integer)d);
    else
      lua_pushnumber(L, d);
  } else if (cJSON_IsString(node)) {
    lua_pushstring(L, node->valuestring);
  } else {
    push_container(L, node);
  }
}

typedef struct decode_args {
  cJSON *root;
} decode_args;

static int push_protected(lua_State *L) {
  decode_args *a = lua_touserdata(L, 1);
  push_json(L, a->root);
  return 1;
}

/*
** "unexpected 'x' at position N": the one byte quoted, escaped unless it
** is printable ASCII, so a NUL or a control byte from a peer's input never
** reaches a log line raw.
*/
static void push_unexpected(lua_State *L, unsigned char c, size_t pos) {
  char quoted[8];
  if (c == '\0')
    snprintf(quoted, sizeof(quoted), "\\0");
  else if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\')
    snprintf(quoted, sizeof(quoted), "\\x%02x", c);
  else
    snprintf(quoted, sizeof(quoted), "%c", c);
  lua_pushfstring(L, "json.decode: unexpected '%s' at position %I", quoted,
                  (lua_Integer)pos + 1);
}

/*
** The position (0-based) of a \u0000 escape in s, or len. cJSON keeps a
** string as C does, so "admin\u0000evil" would come back as "admin" and
** two different strings (or keys) as one: such a text is refused. A
** backslash only occurs in strings, and one preceded by an even run of
** backslashes starts an escape.
*/
static size_t find_nul_escape(const char *s, size_t len) {
  size_t i, run = 0;
  for (i = 0; i < len; i++) {
    if (s[i] == '\\') {
      run++;
      continue;
    }
    if (run % 2 == 1 && s[i] == 'u' && i + 4 < len &&
        memcmp(s + i + 1, "0000", 4) == 0)
      return i - 1;
    run = 0;
  }
  return len;
}

static int l_decode(lua_State *L) {
  size_t len, nul;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *end = NULL;
  decode_args a;
  int status;
  if ((nul = find_nul_escape(s, len)) < len) {
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: \\u0000 in a string at position %I is "
                       "not supported", (lua_Integer)nul + 1);
    return 2;
  }
  /* cJSON's own trailing check rejects a fully consumed buffer: do ours. */
  a.root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (a.root != NULL) {
    while (end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' ||
                             *end == '\r'))
      end++;
    if (end < s + len) {
      cJSON_Delete(a.root);
      a.root = NULL;
    }
  }
  if (a.root == NULL) {
    size_t pos = end ? (size_t)(end - s) : 0;
    lua_pushnil(L);
    if (pos >= len)
      lua_pushfstring(L, "json.decode: unexpected end of input at "
                         "position %I", (lua_Integer)pos + 1);
    else
      push_unexpected(L, (unsigned char)s[pos], pos);
    return 2;
  }
  /* Converting may raise (memory, depth): free the tree either way. */
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, &a);
  status = lua_pcall(L, 1, 1, 0);
  cJSON_Delete(a.root);
  if (status != LUA_OK)
    return lua_error(L);
  return 1;
}

static const luaL_Reg json_functions[] = {
  {"encode", l_encode},
  {"decode", l_decode},
  {NULL, NULL}
};

int luaopen_loom_json(lua_State *L) {
  luaL_newlib(L, json_functions);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
