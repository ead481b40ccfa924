-- KEYS: 1 current, 2 previous, 3 exports:<export_id>, 4 switches stream, 5 retired set,
--       6 current export id (string), 7 pin
-- ARGV: 1 export_id, 2 cutoff (YYYY-MM-DD), 3 time, 4 stream entries kept
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'verified' then
  return {'refused', status or ''}
end
local cur = redis.call('HMGET', KEYS[1], 'export_id', 'cutoff', 'switched_at')
local prev = redis.call('HGET', KEYS[2], 'export_id')
local pin = redis.call('HMGET', KEYS[7], 'export_id', 'pending_export_id')
local outcome = 'switched'
if cur[1] == ARGV[1] then
  outcome = 'already current'
  redis.call('PERSIST', KEYS[3])
elseif pin[1] then
  -- A rollback is pinned: keep this verified export aside until release (one at most).
  outcome = 'skipped: pinned'
  if pin[2] and pin[2] ~= ARGV[1] and pin[2] ~= cur[1] and pin[2] ~= prev then
    redis.call('SADD', KEYS[5], pin[2])
  end
  redis.call('HSET', KEYS[7], 'pending_export_id', ARGV[1], 'pending_cutoff', ARGV[2])
elseif cur[2] and cur[2] > ARGV[2] then
  outcome = 'skipped: older'
  if prev ~= ARGV[1] then
    redis.call('SADD', KEYS[5], ARGV[1])
  end
else
  if cur[2] == ARGV[2] and prev then
    -- A re-run of the current cutoff: the rollback target stays the previous cutoff's
    -- snapshot, and the export it replaces retires.
    redis.call('SADD', KEYS[5], cur[1])
  else
    if cur[1] then
      redis.call('DEL', KEYS[2])
      redis.call('HSET', KEYS[2], 'export_id', cur[1], 'cutoff', cur[2],
        'switched_at', cur[3] or '')
    end
    if prev and prev ~= ARGV[1] and prev ~= cur[1] then
      redis.call('SADD', KEYS[5], prev)
    end
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'export_id', ARGV[1], 'cutoff', ARGV[2], 'switched_at', ARGV[3])
  redis.call('SET', KEYS[6], ARGV[1])
  redis.call('PERSIST', KEYS[3])
end
local event = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'outcome', outcome, 'export_id', ARGV[1], 'cutoff', ARGV[2],
  'current_before', cur[1] or '', 'cutoff_before', cur[2] or '', 'at', ARGV[3])
return {outcome, cur[1] or '', cur[2] or '', event, pin[1] or ''}
