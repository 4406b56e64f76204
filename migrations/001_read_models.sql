-- Read models folded from iotjobs.events. Everything here can be rebuilt from the log.

CREATE TABLE projector_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE things (
    thing_name      text    PRIMARY KEY,
    thing_id        text    NOT NULL,
    thing_type_name text,
    attributes      jsonb   NOT NULL,
    version         integer NOT NULL,
    seq             bigint  NOT NULL
);

CREATE TABLE thing_groups (
    group_name        text             PRIMARY KEY,
    group_id          text             NOT NULL,
    parent_group_name text,
    description       text,
    attributes        jsonb            NOT NULL,
    created_at        double precision NOT NULL,
    version           integer          NOT NULL,
    seq               bigint           NOT NULL
);

CREATE TABLE thing_group_members (
    group_name text   NOT NULL,
    thing_name text   NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (group_name, thing_name)
);

CREATE TABLE jobs (
    job_id           text             PRIMARY KEY,
    status           text             NOT NULL,
    target_selection text             NOT NULL,
    targets          jsonb            NOT NULL,
    description      text,
    document         text             NOT NULL,
    spec             jsonb            NOT NULL,
    created_at       double precision NOT NULL,
    last_updated_at  double precision NOT NULL,
    completed_at     double precision,
    seq              bigint           NOT NULL
);
CREATE INDEX jobs_by_created ON jobs (created_at, job_id);

CREATE TABLE job_executions (
    job_id           text             NOT NULL,
    thing_name       text             NOT NULL,
    execution_number bigint           NOT NULL,
    status           text             NOT NULL,
    status_details   jsonb            NOT NULL,
    queued_at        double precision NOT NULL,
    started_at       double precision,
    last_updated_at  double precision NOT NULL,
    version_number   bigint           NOT NULL,
    deadline         double precision,
    force_canceled   boolean          NOT NULL DEFAULT false,
    retry_attempt    integer          NOT NULL DEFAULT 0,
    namespace_id     text,
    PRIMARY KEY (job_id, thing_name, execution_number)
);
CREATE INDEX job_executions_by_thing ON job_executions (thing_name, queued_at, job_id);
