-- KEYS: 1 current, 2 previous, 3 current export id (string), 4 pin, 5 switches stream
-- ARGV: 1 current export id seen by the caller, 2 previous export id seen by the caller,
--       3 time, 4 by, 5 reason, 6 stream entries kept
local pinned = redis.call('HMGET', KEYS[4], 'export_id', 'pinned_at')
if pinned[1] then
  return {'pinned', pinned[1], pinned[2] or ''}
end
local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'switched_at')
local prev = redis.call('HMGET', KEYS[2], 'export_id', 'cutoff', 'switched_at', 'rolled_back_at')
if not cur[1] or not prev[1] then
  return {'nothing to roll back to', cur[1] or '', prev[1] or ''}
end
if cur[1] ~= ARGV[1] or prev[1] ~= ARGV[2] then
  return {'changed', cur[1], prev[1]}
end
if prev[4] then
  return {'previous was rolled back', prev[1], prev[4]}
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'export_id', prev[1], 'cutoff', prev[2], 'switched_at', ARGV[3])
redis.call('SET', KEYS[3], prev[1])
redis.call('HSET', KEYS[2], 'export_id', cur[1], 'cutoff', cur[2], 'switched_at', cur[3] or '',
  'rolled_back_at', ARGV[3])
redis.call('HSET', KEYS[4], 'export_id', prev[1], 'cutoff', prev[2], 'pinned_at', ARGV[3],
  'by', ARGV[4], 'reason', ARGV[5], 'rolled_back_from', cur[1], 'rolled_back_from_cutoff', cur[2])
local event = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*',
  'outcome', 'rolled back', 'export_id', prev[1], 'cutoff', prev[2],
  'current_before', cur[1], 'cutoff_before', cur[2], 'at', ARGV[3], 'by', ARGV[4],
  'reason', ARGV[5])
return {'rolled back', prev[1], prev[2], cur[1], cur[2], event}
