-- Thing-registry listings: ListThingGroupsForThing, ListThingGroups (parentGroup), ListThings (thingTypeName).

CREATE INDEX thing_group_members_by_thing ON thing_group_members (thing_name, group_name);
CREATE INDEX thing_groups_by_parent ON thing_groups (parent_group_name, group_name);
CREATE INDEX things_by_type ON things (thing_type_name, thing_name);
