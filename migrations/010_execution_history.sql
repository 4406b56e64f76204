-- Every execution's history (iotjobs/domain/history.py): one row per event of the thing aggregate that moved
-- an execution, kept after the execution, its job or its thing is deleted. `seq` is the thing aggregate's
-- event sequence: unique per thing, in the order the thing decided, so a replay writes the same rows.
CREATE TABLE execution_history (
    thing_name       text             NOT NULL,
    seq              bigint           NOT NULL,
    job_id           text             NOT NULL,
    execution_number bigint           NOT NULL,
    status           text             NOT NULL,
    cause            text             NOT NULL,
    status_details   jsonb            NOT NULL,
    version_number   bigint           NOT NULL,
    at               double precision NOT NULL,
    PRIMARY KEY (thing_name, seq)
);
CREATE INDEX execution_history_by_execution ON execution_history (thing_name, job_id, seq);
