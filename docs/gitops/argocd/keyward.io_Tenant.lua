-- Argo CD health check for keyward.io Tenant. docs/gitops.md explains the mapping.
-- Lua 5.1, as Argo CD runs it.
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function int(n)
  return tostring(math.floor(n))
end

local function said(c)
  local reason = c.reason or ""
  if c.message == nil or c.message == "" then
    return reason
  end
  return reason .. ": " .. c.message
end

-- Why the status does not yet describe the current spec, or nil when it does.
local function unobserved(ready)
  if obj.metadata.deletionTimestamp ~= nil then
    return "being deleted"
  end
  if obj.status == nil or obj.status.observedGeneration == nil then
    return "waiting for the keyward controller: no status yet"
  end
  local generation = obj.metadata.generation
  if generation ~= nil then
    local observed = obj.status.observedGeneration
    if ready ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < observed then
      observed = ready.observedGeneration
    end
    if observed < generation then
      return "waiting for the keyward controller: the spec is at generation " .. int(generation) ..
        ", the status describes generation " .. int(observed)
    end
  end
  if ready == nil then
    return "waiting for the keyward controller: no Ready condition yet"
  end
  return nil
end

local ready = condition("Ready")
local waiting = unobserved(ready)
if waiting ~= nil then
  return {status = "Progressing", message = waiting}
end
-- Ready=False: namespaces listed by another tenant, or a broken parent chain.
if ready.status == "False" then
  return {status = "Degraded", message = said(ready)}
end
if ready.status ~= "True" then
  return {status = "Progressing", message = said(ready)}
end
local state = obj.status.effectiveState or "Active"
local counts = ""
local c = obj.status.credentials
if c ~= nil then
  counts = "; credentials: " .. int(c.total or 0) .. " (active " .. int(c.active or 0) ..
    ", expired " .. int(c.expired or 0) .. ", revoked " .. int(c.revoked or 0) ..
    ", invalid " .. int(c.invalid or 0) .. ")"
end
-- Suspended and Offboarded are decisions written in Git (by this tenant or an ancestor,
-- or by endsAt), not failures.
if state ~= "Active" then
  return {status = "Suspended", message = "effective state " .. state .. counts}
end
return {status = "Healthy", message = "effective state Active" .. counts}
