-- KEYS[1]: index list
-- ARGV[1]: ttl seconds, ARGV[2]: key prefix of the export, ARGV[3]: entity ids joined by
-- newlines (an entity id holds no newline; the export checks), ARGV[4..]: their packed vectors
local ttl, prefix, ids = ARGV[1], ARGV[2], ARGV[3]
local i, n = 1, 0
while true do
  local id_end = string.find(ids, '\n', i, true)
  n = n + 1
  local vector = ARGV[3 + n]
  if not vector then
    return redis.error_reply('a staging chunk has more entity ids than vectors')
  end
  redis.call('SET', prefix .. string.sub(ids, i, (id_end or 0) - 1), vector, 'EX', ttl)
  if not id_end then
    break
  end
  i = id_end + 1
end
if n ~= #ARGV - 3 then
  return redis.error_reply('a staging chunk has more vectors than entity ids')
end
redis.call('RPUSH', KEYS[1], ids)
redis.call('EXPIRE', KEYS[1], ttl)
return n
