-- Job templates and the tags of jobs and job templates, folded from iotjobs.events.

CREATE TABLE job_templates (
    template_id text COLLATE "C" PRIMARY KEY,  -- ListJobTemplates pages in code-point order
    description text             NOT NULL,
    spec        jsonb            NOT NULL,  -- DescribeJobTemplate's members in their wire form
    created_at  double precision NOT NULL,
    seq         bigint           NOT NULL
);

CREATE TABLE resource_tags (
    resource_type text   NOT NULL,  -- 'job' or 'jobtemplate', as in the ARN
    resource_id   text   NOT NULL,
    tags          jsonb  NOT NULL,  -- the whole tag set: {"key": "value", ...}
    seq           bigint NOT NULL,  -- sequence number of the owning aggregate's TagsChanged event
    PRIMARY KEY (resource_type, resource_id)
);
