-- wrk script for scripts/bench.sh (the accounts section): orders.lua spread over
-- the three markets of init.txt and init-accounts.txt. Cycles through buy and sell
-- in FOLD at 100, ACME at 250 and BOLT at 1200, each price between the market's
-- best bid and best ask in the shipped books, qty 1: as in orders.lua, each order
-- rests or fills against the opposite order resting at its price, so about half
-- the events carry a fill and every book stays small.
local reqs = {
    wrk.format("POST", "/markets/FOLD/buy/wrk/100"),
    wrk.format("POST", "/markets/FOLD/sell/wrk/100"),
    wrk.format("POST", "/markets/ACME/buy/wrk/250"),
    wrk.format("POST", "/markets/ACME/sell/wrk/250"),
    wrk.format("POST", "/markets/BOLT/buy/wrk/1200"),
    wrk.format("POST", "/markets/BOLT/sell/wrk/1200"),
}
local n = 0
request = function()
    n = n + 1
    return reqs[(n % #reqs) + 1]
end
