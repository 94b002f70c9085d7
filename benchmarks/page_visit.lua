-- wrk script: POST page visits for a pool of sessions moving between pages.
-- The pool is read from the file named by NM_SESSIONS (one session id per line,
-- created beforehand through session/start as the shop's client does).
local sids = {}
local pages = {
  '"pageType":"homepage"',
  '"pageType":"category","pageIdentifier":"electronics"',
  '"pageType":"category","pageIdentifier":"garden"',
  '"pageType":"offer","pageIdentifier":"black-friday"',
  '"pageType":"product","pageIdentifier":"sku-123"',
  '"pageType":"checkout"',
  '"pageType":"payment"',
}

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  for line in io.lines(os.getenv("NM_SESSIONS")) do sids[#sids + 1] = line end
end

function request()
  local body = '{"sessionId":"' .. sids[math.random(1, #sids)] .. '",'
    .. pages[math.random(1, #pages)] .. ',"pageUrl":"https://shop.test/page"}'
  return wrk.format("POST", "/api/metrics/track/page-visit",
    {["Content-Type"] = "application/json"}, body)
end
