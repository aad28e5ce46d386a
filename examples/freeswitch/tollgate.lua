-- FreeSWITCH -> tollgate: ask before every outbound call, cap it, report the end.
-- Documented, not run by tollgate's tests (FreeSWITCH is not packaged for the Debian
-- release the project tests on; the same HTTP exchange is tested for real with Kamailio).
--
-- Dialplan (an outbound extension), before bridging:
--   <action application="set" data="tollgate_token=${cond(... or from vars.xml)}"/>
--   <action application="lua" data="tollgate.lua"/>
--   <action application="bridge" data="sofia/gateway/trunk/${destination_number}"/>
--
-- Needs mod_curl (the `curl` API) and mod_lua. The script
--   * POSTs /v1/calls/authorize with the channel uuid as pbx_ref (what the kill switch's
--     freeswitch_esl adapter passes to `uuid_kill`),
--   * on deny answers 403 (CALL_REJECTED) and stops,
--   * on allow schedules the hangup at max_duration_s (`sched_hangup`) and registers an
--     api_hangup_hook that POSTs /end with the billed seconds.
-- FAIL-CLOSED by default: no answer within `timeout` seconds rejects the call. Set
-- tollgate_fail_open=true on the channel to bridge with a fixed cap instead.

local tollgate = "http://127.0.0.1:8480"
local timeout = 1 -- seconds, for connect and for the whole request

local api = freeswitch.API()
local uuid = session:get_uuid()
local token = session:getVariable("tollgate_token") or ""

-- JSON string escaping for the few values sent.
local function q(s)
  s = tostring(s or "")
  s = s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('%c', ' ')
  return '"' .. s .. '"'
end

local function post(path, body)
  -- mod_curl: curl URL [content-type M|timeout S|connect-timeout S|append_headers H] post DATA
  local cmd = tollgate .. path ..
    " content-type application/json" ..
    " connect-timeout " .. timeout .. " timeout " .. timeout ..
    " append_headers 'Authorization: Bearer " .. token .. "'" ..
    " json post " .. body
  return api:execute("curl", cmd)
end

local function field(json, name)
  -- The answer is tollgate's flat JSON: a pattern is enough for these fields.
  return json:match('"' .. name .. '"%s*:%s*"([^"]*)"') or json:match('"' .. name .. '"%s*:%s*(%d+)')
end

local body = "{" ..
  '"call_id":' .. q(uuid) .. "," ..
  '"extension":' .. q(session:getVariable("caller_id_number")) .. "," ..
  '"source_ip":' .. q(session:getVariable("network_addr")) .. "," ..
  '"number":' .. q(session:getVariable("destination_number")) .. "," ..
  '"pbx_ref":' .. q(uuid) .. "}"

local reply = post("/v1/calls/authorize", body) or ""
-- mod_curl's `json` output wraps the response: {"status_code": N, "body": "..."}
local status = tonumber(reply:match('"status_code"%s*:%s*(%d+)') or "0")
local inner = reply:match('"body"%s*:%s*"(.*)"') or ""
inner = inner:gsub('\\"', '"')

if status ~= 200 then
  freeswitch.consoleLog("ERR", "tollgate unreachable or failing (" .. status .. ") for " .. uuid .. "\n")
  if session:getVariable("tollgate_fail_open") == "true" then
    session:execute("sched_hangup", "+600 allotted_timeout")
    return
  end
  session:hangup("CALL_REJECTED")
  return
end

if field(inner, "decision") ~= "allow" then
  freeswitch.consoleLog("NOTICE", "tollgate denied " .. uuid .. ": " .. (field(inner, "code") or "?") .. "\n")
  session:hangup("CALL_REJECTED")
  return
end

local max = tonumber(field(inner, "max_duration_s") or "0")
if max <= 0 then
  session:hangup("CALL_REJECTED")
  return
end
session:execute("sched_hangup", "+" .. max .. " allotted_timeout")
-- The end: on hangup, report the billed seconds (billsec) to tollgate.
session:setVariable("api_hangup_hook",
  "curl " .. tollgate .. "/v1/calls/" .. uuid .. "/end" ..
  " content-type application/json timeout " .. timeout ..
  " append_headers 'Authorization: Bearer " .. token .. "'" ..
  " post {\"duration_s\":${billsec}}")
