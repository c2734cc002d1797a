-- Argo CD health check for keyward.io PartnerIntegration. docs/gitops.md explains the
-- mapping. Lua 5.1, as Argo CD runs it.
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

-- Conditions other than Ready worth a word: the type, and the status that is news.
local function notes(message, watched)
  for _, w in ipairs(watched) do
    local c = condition(w[1])
    if c ~= nil and c.status == w[2] then
      message = message .. "; " .. w[1] .. "=" .. w[2] .. " " .. said(c)
    end
  end
  return message
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

-- Ready=False reasons that a deliberate suspension (of the integration or its Tenant)
-- holds until it is lifted. Every other reason (Expired, TenantOffboarded, OwnerMissing, the
-- Invalid reasons) needs a change in Git or in the cluster.
local held = {TenantSuspended = true, IntegrationSuspended = true}

local ready = condition("Ready")
local waiting = unobserved(ready)
if waiting ~= nil then
  return {status = "Progressing", message = waiting}
end
if ready.status == "True" then
  return {status = "Healthy", message = notes(said(ready), {{"OwnerBound", "False"}})}
end
if ready.status ~= "False" or ready.reason == "Pending" then
  return {status = "Progressing", message = said(ready)}
end
if held[ready.reason] then
  return {status = "Suspended", message = said(ready)}
end
return {status = "Degraded", message = said(ready)}
