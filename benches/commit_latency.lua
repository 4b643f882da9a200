-- sysbench script for benches/commit_latency.sh: one transaction per event that updates one
-- row on each of `legs` shards and commits (BEGIN; UPDATE ...; COMMIT). The rows of shard i
-- are the i-th list of --keys ("1,5,9;2,3,8;4,6,7"): the script that runs this found which
-- rows live where by reading the shards directly, so each transaction touches exactly `legs`
-- shards.
sysbench.cmdline.options = {
  keys = {"id lists, one per shard: ids separated by commas, shards by semicolons", ""},
  legs = {"how many shards each transaction writes on", 1},
  table = {"the table (id BIGINT PRIMARY KEY, v BIGINT)", "cl"},
}

function thread_init()
  drv = sysbench.sql.driver()
  con = drv:connect()
  shards = {}
  for list in string.gmatch(sysbench.opt.keys, "[^;]+") do
    local ids = {}
    for id in string.gmatch(list, "[^,]+") do
      ids[#ids + 1] = id
    end
    shards[#shards + 1] = ids
  end
  if #shards < sysbench.opt.legs then
    error(string.format("--legs=%d but --keys names %d shard(s)", sysbench.opt.legs, #shards))
  end
end

function event()
  con:query("BEGIN")
  for i = 1, sysbench.opt.legs do
    local ids = shards[i]
    local id = ids[sysbench.rand.uniform(1, #ids)]
    con:query("UPDATE " .. sysbench.opt.table .. " SET v = v + 1 WHERE id = " .. id)
  end
  con:query("COMMIT")
end

function thread_done()
  con:disconnect()
end
