-- ListJobExecutionsForJob pages through a job's executions in (queued_at, thing_name) order: with this
-- index a page reads its own rows, not every execution of the job.
CREATE INDEX job_executions_by_job_queue ON job_executions (job_id, queued_at, thing_name);
