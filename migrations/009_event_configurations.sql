-- UpdateEventConfigurations: which event types are published on $aws/events/... (JOB and JOB_EXECUTION are).
CREATE TABLE event_configurations (
    event_type    text             PRIMARY KEY,
    enabled       boolean          NOT NULL,
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL,
    seq           bigint           NOT NULL
);
