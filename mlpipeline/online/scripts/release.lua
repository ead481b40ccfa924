-- KEYS: 1 pin, 2 switches stream, 3 current
-- ARGV: 1 time, 2 by, 3 reason, 4 stream entries kept
local pin = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'pending_export_id',
  'pending_cutoff', 'pinned_at')
if not pin[1] then
  return {'not pinned'}
end
redis.call('DEL', KEYS[1])
local cur = redis.call('HMGET', KEYS[3], 'export_id', 'cutoff')
local event = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
  'outcome', 'released', 'export_id', cur[1] or '', 'cutoff', cur[2] or '',
  'pinned_export_id', pin[1], 'pending_export_id', pin[3] or '', 'at', ARGV[1], 'by', ARGV[2],
  'reason', ARGV[3])
return {'released', pin[1], pin[2], pin[3] or '', pin[4] or '', pin[5] or '', event}
