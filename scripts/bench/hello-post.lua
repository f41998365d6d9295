-- wrk script for scripts/bench.sh: the baseline of the write benchmark. Same shape
-- as orders.lua (two preformatted POSTs, alternated by the same Lua function, so
-- wrk's own cost is the same), sent to the hello-world's only route, `/`.
local reqs = {
    wrk.format("POST", "/"),
    wrk.format("POST", "/"),
}
local n = 0
request = function()
    n = n + 1
    return reqs[(n % 2) + 1]
end
