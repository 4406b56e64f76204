-- Executions per job and status, kept by the database as job_executions rows change, so DescribeJob's
-- jobProcessDetails reads a handful of rows instead of counting every execution of the job.
CREATE TABLE job_execution_counts (
    job_id text   NOT NULL,
    status text   NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (job_id, status)
);

CREATE FUNCTION count_job_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE job_execution_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
        DELETE FROM job_execution_counts WHERE job_id = OLD.job_id AND status = OLD.status AND n = 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO job_execution_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
            ON CONFLICT (job_id, status) DO UPDATE SET n = job_execution_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_executions_counted AFTER INSERT OR DELETE ON job_executions
    FOR EACH ROW EXECUTE FUNCTION count_job_executions();
-- Most updates (a device reporting progress) keep the status: they cost nothing here.
CREATE TRIGGER job_executions_recounted AFTER UPDATE ON job_executions
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.job_id IS DISTINCT FROM NEW.job_id)
    EXECUTE FUNCTION count_job_executions();

INSERT INTO job_execution_counts (job_id, status, n)
    SELECT job_id, status, count(*) FROM job_executions GROUP BY job_id, status;
