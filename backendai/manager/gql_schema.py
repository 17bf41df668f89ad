"""The admin GraphQL schema (``POST /admin/gql``), in the field names Backend.AI clients send.

Object-valued fields that Backend.AI types as ``JSONString`` (slots, options,
hardware) are strings holding JSON here too: the official client decodes them.
Timestamps are ISO 8601 strings.  ``BigInt`` carries byte counts past 2**31.
"""

from __future__ import annotations

from graphql import GraphQLSchema, build_schema

__all__ = ["SCHEMA", "SDL"]

# The create and modify inputs take the same fields (all optional on modify anyway).
_KEYPAIR_INPUT = """{
  is_active: Boolean
  is_admin: Boolean
  resource_policy: String
  concurrency_limit: Int
  rate_limit: Int
  scaling_groups: [String]
}"""
_POLICY_INPUT = """{
  default_for_unspecified: String
  total_resource_slots: JSONString
  max_session_lifetime: Int
  max_concurrent_sessions: Int
  max_pending_session_count: Int
  max_concurrent_sftp_sessions: Int
  max_containers_per_session: Int
  idle_timeout: BigInt
  allowed_vfolder_hosts: JSONString
  max_vfolder_count: Int
  max_vfolder_size: BigInt
}"""

SDL = """
scalar UUID
scalar BigInt
scalar JSONString

type Container {
  id: ID
  cluster_role: String
  cluster_idx: Int
  cluster_hostname: String
  session_id: ID
  image: String
  registry: String
  status: String
  status_info: String
  status_data: JSONString
  status_changed: String
  agent: String
  container_id: String
  resource_opts: JSONString
  occupied_slots: JSONString
  preopen_ports: [Int]
  live_stat: JSONString
  last_stat: JSONString
}

type Dependency { id: ID name: String }

type ComputeSession {
  id: ID
  session_id: ID
  main_kernel_id: ID
  tag: String
  name: String
  type: String
  image: String
  registry: String
  cluster_template: String
  cluster_mode: String
  cluster_size: Int
  domain_name: String
  group_name: String
  group_id: ID
  agent_ids: [String]
  user_email: String
  user_id: ID
  access_key: String
  created_user_email: String
  created_user_id: ID
  status: String
  status_info: String
  status_data: JSONString
  status_changed: String
  created_at: String
  terminated_at: String
  starts_at: String
  scheduled_at: String
  startup_command: String
  result: String
  resource_opts: JSONString
  scaling_group: String
  service_ports: JSONString
  mounts: [String]
  occupying_slots: JSONString
  occupied_slots: JSONString
  requested_slots: JSONString
  containers: [Container]
  dependencies: [Dependency]
  abusing_reports: [JSONString]
  idle_checks: JSONString
}

type ComputeSessionList { items: [ComputeSession]! total_count: Int! }

type Agent {
  id: ID
  status: String
  status_changed: String
  region: String
  architecture: String
  scaling_group: String
  schedulable: Boolean
  available_slots: JSONString
  occupied_slots: JSONString
  addr: String
  first_contact: String
  lost_at: String
  live_stat: JSONString
  version: String
  compute_plugins: JSONString
  hardware_metadata: JSONString
  compute_containers(status: String): [Container]
  local_config: JSONString
  cpu_cur_pct: Float
  mem_cur_bytes: BigInt
}

type AgentList { items: [Agent]! total_count: Int! }

type GroupRef { id: ID name: String }

type User {
  uuid: ID
  id: ID
  username: String
  email: String
  need_password_change: Boolean
  full_name: String
  description: String
  is_active: Boolean
  status: String
  status_info: String
  created_at: String
  modified_at: String
  domain_name: String
  role: String
  resource_policy: String
  groups: [GroupRef]
  allowed_client_ip: [String]
  totp_activated: Boolean
  sudo_session_enabled: Boolean
  main_access_key: String
}

type UserList { items: [User]! total_count: Int! }

type UserInfo { email: String full_name: String }

type KeyPair {
  user_id: String
  user_info: UserInfo
  projects: [String]
  access_key: String
  secret_key: String
  is_active: Boolean
  is_admin: Boolean
  created_at: String
  modified_at: String
  last_used: String
  resource_policy: String
  rate_limit: Int
  concurrency_used: Int
  num_queries: Int
  ssh_public_key: String
  ssh_private_key: String
  dotfiles: String
  bootstrap_script: String
}

type KeyPairList { items: [KeyPair]! total_count: Int! }

type KeyPairResourcePolicy {
  name: String
  created_at: String
  default_for_unspecified: String
  total_resource_slots: JSONString
  max_session_lifetime: Int
  max_concurrent_sessions: Int
  max_pending_session_count: Int
  max_concurrent_sftp_sessions: Int
  max_containers_per_session: Int
  idle_timeout: BigInt
  max_vfolder_count: Int
  max_vfolder_size: BigInt
  allowed_vfolder_hosts: JSONString
}

type FolderPolicy {
  name: String
  created_at: String
  max_vfolder_count: Int
  max_quota_scope_size: BigInt
}

type ScalingGroup {
  name: String
  description: String
  is_active: Boolean
  is_public: Boolean
  created_at: String
  driver: String
  driver_opts: JSONString
  scheduler: String
  scheduler_opts: JSONString
  use_host_network: Boolean
  wsproxy_addr: String
  wsproxy_api_token: String
}

type Image {
  name: String
  registry: String
  architecture: String
  tag: String
  digest: String
  size_bytes: BigInt
  aliases: [String]
  labels: JSONString
  installed: Boolean
}

type Domain {
  name: String
  description: String
  is_active: Boolean
  created_at: String
  modified_at: String
  total_resource_slots: JSONString
  allowed_vfolder_hosts: JSONString
  allowed_docker_registries: [String]
  integration_id: String
  scaling_groups: [String]
}

type Group {
  id: ID
  name: String
  description: String
  is_active: Boolean
  created_at: String
  modified_at: String
  domain_name: String
  total_resource_slots: JSONString
  allowed_vfolder_hosts: JSONString
  integration_id: String
  resource_policy: String
  scaling_groups: [String]
}

type Query {
  compute_session_list(limit: Int!, offset: Int!, status: String, access_key: String,
    domain_name: String, group_id: String, filter: String, order: String): ComputeSessionList
  compute_session(id: UUID!): ComputeSession
  agent_list(limit: Int!, offset: Int!, status: String, scaling_group: String,
    filter: String, order: String): AgentList
  agents(status: String, scaling_group: String): [Agent]
  agent(agent_id: String!): Agent
  user(domain_name: String, email: String): User
  user_from_uuid(domain_name: String, user_id: ID): User
  users(domain_name: String, group_id: UUID, is_active: Boolean, status: String): [User]
  user_list(limit: Int!, offset: Int!, domain_name: String, group_id: UUID,
    is_active: Boolean, status: String, filter: String, order: String): UserList
  keypair(domain_name: String, access_key: String): KeyPair
  keypairs(domain_name: String, email: String, is_active: Boolean): [KeyPair]
  keypair_list(limit: Int!, offset: Int!, domain_name: String, email: String,
    is_active: Boolean, filter: String, order: String): KeyPairList
  keypair_resource_policy(name: String): KeyPairResourcePolicy
  keypair_resource_policies: [KeyPairResourcePolicy]
  user_resource_policies: [FolderPolicy]
  project_resource_policies: [FolderPolicy]
  scaling_group(name: String): ScalingGroup
  scaling_groups(name: String, is_active: Boolean): [ScalingGroup]
  images(is_installed: Boolean, is_operation: Boolean, image_filters: [String]): [Image]
  domain(name: String): Domain
  domains(is_active: Boolean): [Domain]
  group(id: UUID!, domain_name: String): Group
  groups(domain_name: String, is_active: Boolean): [Group]
}

input UserInput {
  username: String
  password: String!
  need_password_change: Boolean
  full_name: String
  description: String
  is_active: Boolean
  status: String
  domain_name: String!
  role: String
  group_ids: [String]
  allowed_client_ip: [String]
  totp_activated: Boolean
  resource_policy: String
  sudo_session_enabled: Boolean
}

input KeyPairInput KEYPAIR_INPUT

input ModifyKeyPairInput KEYPAIR_INPUT

input CreateKeyPairResourcePolicyInput POLICY_INPUT

input ModifyKeyPairResourcePolicyInput POLICY_INPUT

input DomainInput {
  description: String
  is_active: Boolean
  total_resource_slots: JSONString
  allowed_vfolder_hosts: JSONString
  allowed_docker_registries: [String]
  integration_id: String
  scaling_groups: [String]
}

input GroupInput {
  description: String
  is_active: Boolean
  domain_name: String!
  total_resource_slots: JSONString
  allowed_vfolder_hosts: JSONString
  integration_id: String
  resource_policy: String
  scaling_groups: [String]
}

input FolderPolicyInput { max_vfolder_count: Int max_quota_scope_size: BigInt }

type CreateFolderPolicy { ok: Boolean msg: String resource_policy: FolderPolicy }
type CreateDomain { ok: Boolean msg: String domain: Domain }
type CreateGroup { ok: Boolean msg: String group: Group }
type CreateUser { ok: Boolean msg: String user: User }
type CreateKeyPair { ok: Boolean msg: String keypair: KeyPair }
type CreateKeyPairResourcePolicy { ok: Boolean msg: String resource_policy: KeyPairResourcePolicy }
type SimpleResult { ok: Boolean msg: String }

type Mutation {
  create_domain(name: String!, props: DomainInput!): CreateDomain
  create_user_resource_policy(name: String!, props: FolderPolicyInput!): CreateFolderPolicy
  create_project_resource_policy(name: String!, props: FolderPolicyInput!): CreateFolderPolicy
  create_group(name: String!, props: GroupInput!): CreateGroup
  create_user(email: String!, props: UserInput!): CreateUser
  create_keypair(user_id: String!, props: KeyPairInput!): CreateKeyPair
  modify_keypair(access_key: String!, props: ModifyKeyPairInput!): SimpleResult
  create_keypair_resource_policy(name: String!,
    props: CreateKeyPairResourcePolicyInput!): CreateKeyPairResourcePolicy
  modify_keypair_resource_policy(name: String!,
    props: ModifyKeyPairResourcePolicyInput!): SimpleResult
}
"""

SDL = SDL.replace("KEYPAIR_INPUT", _KEYPAIR_INPUT).replace("POLICY_INPUT", _POLICY_INPUT)
SCHEMA: GraphQLSchema = build_schema(SDL)
