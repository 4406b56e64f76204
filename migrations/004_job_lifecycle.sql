-- CancelJob, DeleteJob and CancelJobExecution state in the read models.

ALTER TABLE jobs ADD COLUMN force_canceled boolean NOT NULL DEFAULT false;
ALTER TABLE jobs ADD COLUMN reason_code text;
ALTER TABLE jobs ADD COLUMN comment text;
