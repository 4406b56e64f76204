-- The targets a job is still rolling out to (jobProcessDetails.processingTargets; isConcurrent while any).
ALTER TABLE jobs ADD COLUMN processing_targets jsonb NOT NULL DEFAULT '[]'::jsonb;
