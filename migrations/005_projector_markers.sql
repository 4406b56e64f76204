-- The tokens (per scope, as JSON) of the latest ownership markers the projector has read in each events
-- partition: only events written under them count (iotjobs/runtime/eventlog.py).
ALTER TABLE projector_offsets ADD COLUMN marker text;
