-- Runs an Argo CD resource health script the way Argo CD does: the object, decoded from
-- JSON, is the global `obj`; the script returns {status = ..., message = ...}. Prints that
-- result as one line of JSON.
--
--   lua5.4 tests/gitops/driver.lua HEALTH_SCRIPT [OBJECT_JSON]    (stdin without OBJECT_JSON)
--   kubectl get apikey NAME -n NS -o json | lua5.4 tests/gitops/driver.lua docs/gitops/argocd/keyward.io_ApiKey.lua
local cjson = require("cjson")

local script_path, object_path = arg[1], arg[2]
if script_path == nil then
  io.stderr:write("usage: driver.lua HEALTH_SCRIPT [OBJECT_JSON]\n")
  os.exit(2)
end

local input = io.stdin
if object_path ~= nil and object_path ~= "-" then
  input = assert(io.open(object_path, "r"))
end
local text = input:read("*a")

-- Argo CD hands the script Go values, where a JSON null is no value at all.
local function without_nulls(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    if v ~= cjson.null then
      out[k] = without_nulls(v)
    end
  end
  return out
end

-- Only what Argo CD's health scripts get: no io, os, require or load.
local env = {
  obj = without_nulls(cjson.decode(text)),
  ipairs = ipairs, pairs = pairs, next = next, type = type, select = select,
  tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
  string = string, table = table, math = math,
}
local source = assert(io.open(script_path, "r")):read("*a")
local chunk = assert(load(source, "@" .. script_path, "t", env))
local ok, result = pcall(chunk)
if not ok then
  io.stderr:write("health script failed: " .. tostring(result) .. "\n")
  os.exit(1)
end

local statuses = {Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true}
if type(result) ~= "table" or not statuses[result.status] or type(result.message) ~= "string" then
  io.stderr:write("health script returned no {status, message} Argo CD accepts\n")
  os.exit(1)
end
print(cjson.encode({status = result.status, message = result.message}))
