-- wrk script: page visits, with a share of custom events (track/event) mixed in.
-- NM_SESSIONS names a file of session ids (one a line); NM_EVENT_SHARE is the share of
-- requests that are custom events (0: page visits only, as benchmarks/page_visit.lua).
-- NM_EVENT_IDS=1 gives every request a fresh eventId, as the browser tracker does (an
-- event with an eventId is written to the event log, for idempotency).
local sids = {}
local share = 0
local ids = false
local counter = 0
local pages = {
  '"pageType":"homepage"',
  '"pageType":"category","pageIdentifier":"electronics"',
  '"pageType":"offer","pageIdentifier":"black-friday"',
  '"pageType":"product","pageIdentifier":"sku-123"',
  '"pageType":"checkout"',
}
local events = {
  '"name":"add_to_cart","properties":{"sku":"sku-123","quantity":2,"price":19.99}',
  '"name":"newsletter_signup","properties":{"source":"footer"}',
  '"name":"size_chart","properties":{"sku":"sku-123","open":true}',
}

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  for line in io.lines(os.getenv("NM_SESSIONS")) do sids[#sids + 1] = line end
  share = tonumber(os.getenv("NM_EVENT_SHARE") or "0")
  ids = os.getenv("NM_EVENT_IDS") == "1"
end

function request()
  local sid = '{"sessionId":"' .. sids[math.random(1, #sids)] .. '",'
  if ids then
    counter = counter + 1
    sid = sid .. string.format('"eventId":"%08x-%d-%d",', math.random(0, 0x7fffffff),
      os.time(), counter)
  end
  if math.random() < share then
    return wrk.format("POST", "/api/metrics/track/event",
      {["Content-Type"] = "application/json"}, sid .. events[math.random(1, #events)] .. '}')
  end
  return wrk.format("POST", "/api/metrics/track/page-visit",
    {["Content-Type"] = "application/json"},
    sid .. pages[math.random(1, #pages)] .. ',"pageUrl":"https://shop.test/page"}')
end
