-- wrk script for scripts/bench.sh: durable order placement. Alternates
-- POST /buy/wrk/100 and POST /sell/wrk/100 (qty 1): with the shipped init.txt
-- (bids up to 99, asks from 101) each order either rests at 100 or fills against
-- the opposite order resting at 100, so about half the events carry a fill and the
-- book stays small (uncrossed, never beyond a few orders at 100).
-- The two requests are formatted once; wrk just alternates them.
local reqs = {
    wrk.format("POST", "/buy/wrk/100"),
    wrk.format("POST", "/sell/wrk/100"),
}
local n = 0
request = function()
    n = n + 1
    return reqs[(n % 2) + 1]
end
