//! States, phases and the messages the saga exchanges with its activities and callers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DerivedNames, ValidRequest};

/// The name of the Temporal task queue the saga and its activities run on.
pub const TASK_QUEUE: &str = "tenant-provisioning";
/// The workflow type name.
pub const WORKFLOW_TYPE: &str = "ProvisionTenant";

/// Search attributes kept current by the workflow (all Keyword).
pub mod search_attributes {
    pub const ORG: &str = "TenantOrg";
    pub const SLUG: &str = "TenantSlug";
    pub const STATE: &str = "TenantState";
    pub const PHASE: &str = "TenantPhase";
}

/// The lifecycle state of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    Provisioning,
    Active,
    Suspended,
    Compensating,
    Failed,
    Decommissioning,
    Decommissioned,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Compensating => "compensating",
            Self::Failed => "failed",
            Self::Decommissioning => "decommissioning",
            Self::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "compensating" => Self::Compensating,
            "failed" => Self::Failed,
            "decommissioning" => Self::Decommissioning,
            "decommissioned" => Self::Decommissioned,
            _ => return None,
        })
    }

    /// A tenant holds its slot (key and host label) in every state but `decommissioned`.
    pub fn holds_slot(self) -> bool {
        self != Self::Decommissioned
    }

    /// The stable state a transient state is heading for.
    pub fn next_stable(self) -> Self {
        match self {
            Self::Provisioning => Self::Active,
            Self::Compensating => Self::Failed,
            Self::Decommissioning => Self::Decommissioned,
            other => other,
        }
    }
}

impl std::fmt::Display for TenantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps of provisioning, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Validate,
    AllocateStorage,
    AllocateIdentity,
    AllocateTraffic,
    Deploy,
    /// Checks from outside, over HTTPS with the real certificate, that the host serves this
    /// tenant's identity endpoint before the public may reach it.
    Verify,
    MarkActive,
    WelcomeEmails,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Self::Validate,
        Self::AllocateStorage,
        Self::AllocateIdentity,
        Self::AllocateTraffic,
        Self::Deploy,
        Self::Verify,
        Self::MarkActive,
        Self::WelcomeEmails,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::AllocateStorage => "allocate_storage",
            Self::AllocateIdentity => "allocate_identity",
            Self::AllocateTraffic => "allocate_traffic",
            Self::Deploy => "deploy",
            Self::Verify => "verify",
            Self::MarkActive => "mark_active",
            Self::WelcomeEmails => "welcome_emails",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind of resource allocated in the tenant's name; each has exactly one release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// The tenant's PostgreSQL database and login role.
    Storage,
    /// The tenant's realm: signing key and first admin invitation.
    Identity,
    /// The tenant's route at the edge proxy.
    Traffic,
    /// The tenant's running service.
    Workload,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storage => "storage",
            Self::Identity => "identity",
            Self::Traffic => "traffic",
            Self::Workload => "workload",
        }
    }

    /// The phase that allocates this kind.
    pub fn phase(self) -> Phase {
        match self {
            Self::Storage => Phase::AllocateStorage,
            Self::Identity => Phase::AllocateIdentity,
            Self::Traffic => Phase::AllocateTraffic,
            Self::Workload => Phase::Deploy,
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three welcome emails, sent in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    Welcome,
    ConsoleUrl,
    Onboarding,
}

impl EmailKind {
    pub const ALL: [EmailKind; 3] = [Self::Welcome, Self::ConsoleUrl, Self::Onboarding];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::ConsoleUrl => "console_url",
            Self::Onboarding => "onboarding",
        }
    }
}

/// What every activity is told about the tenant it works for. Carries no secrets: it is
/// stored in the workflow history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSpec {
    pub request: ValidRequest,
    pub names: DerivedNames,
    /// Counts provisionings of this key: 1 for the first, +1 after each decommission.
    pub incarnation: i32,
    /// Who asked for this incarnation (principal name).
    pub requested_by: String,
}

impl TenantSpec {
    pub fn tenant_id(&self) -> Uuid {
        self.names.tenant_id
    }
}

/// The workflow's input.
pub type ProvisionInput = TenantSpec;

/// A phase activity's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseInput {
    pub tenant: TenantSpec,
    /// Which provisioning round of this run (1, then +1 per `retry`): keeps the audit
    /// entries of a retried round apart from the first.
    pub round: u32,
}

/// What an allocation made, as recorded in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub kind: ResourceKind,
    /// The resource's name in its own system (database name, route id, ...).
    pub name: String,
    /// True when this attempt found the resource already made for this tenant and adopted it.
    pub adopted: bool,
}

/// A release activity's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInput {
    pub tenant: TenantSpec,
    pub kind: ResourceKind,
    /// Why the release runs: `compensation` or `decommission`.
    pub reason: String,
    pub round: u32,
}

/// Input of the activity that sends one welcome email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailInput {
    pub tenant: TenantSpec,
    pub kind: EmailKind,
    pub round: u32,
}

/// The outcome of one email; a refusal is an outcome, not an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailOutcome {
    pub kind: EmailKind,
    pub delivered: bool,
    pub message_id: String,
    /// The SMTP server's answer when it refused.
    pub error: Option<String>,
}

/// Input of the activity that records a state change or workflow-level event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordInput {
    pub tenant: TenantSpec,
    /// Unique within the workflow run; a retried record is written once.
    pub event_key: String,
    pub state: TenantState,
    pub phase: Option<Phase>,
    /// Audit event kind, e.g. `state_changed`, `compensation_started`.
    pub kind: String,
    pub message: String,
    pub actor: String,
    pub last_error: Option<PhaseFailure>,
}

/// Why a phase failed, with the real error message and type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseFailure {
    pub phase: Phase,
    pub error_type: String,
    pub message: String,
    pub attempt: u32,
}

/// A lifecycle action an operator or the console asks of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Retry,
    Decommission,
    Suspend,
    Resume,
    /// A new invitation for the first admin (the old code stops working), sent by email.
    ReissueInvitation,
    /// Sends one welcome email again; the request names which (`email`).
    ResendEmail,
}

impl LifecycleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Decommission => "decommission",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::ReissueInvitation => "reissue_invitation",
            Self::ResendEmail => "resend_email",
        }
    }

    /// True for actions that change the tenant's state (the others only act on it).
    pub fn changes_state(self) -> bool {
        !matches!(self, Self::ReissueInvitation | Self::ResendEmail)
    }

    /// The states the action is accepted in.
    pub fn allowed_from(self) -> &'static [TenantState] {
        use TenantState::*;
        match self {
            Self::Retry => &[Failed],
            Self::Decommission => &[Provisioning, Active, Suspended, Failed],
            Self::Suspend => &[Active],
            Self::Resume => &[Suspended],
            Self::ReissueInvitation => &[Active, Suspended],
            Self::ResendEmail => &[Active],
        }
    }

    /// Why the action cannot run in `state`, or `None` when it can.
    pub fn refusal(self, state: TenantState) -> Option<String> {
        if self.allowed_from().contains(&state) {
            return None;
        }
        let allowed: Vec<&str> = self.allowed_from().iter().map(|s| s.as_str()).collect();
        Some(format!(
            "cannot {} a tenant that is {state}; allowed from: {}",
            self.as_str(),
            allowed.join(", ")
        ))
    }
}

/// The payload of a lifecycle update or signal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRequest {
    pub action: LifecycleAction,
    /// Who asked (principal name, or `temporal-ui` for a bare signal).
    #[serde(default = "unknown_actor")]
    pub actor: String,
    /// For `resend_email`: which email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailKind>,
}

impl LifecycleRequest {
    pub fn new(action: LifecycleAction, actor: impl Into<String>) -> Self {
        Self {
            action,
            actor: actor.into(),
            email: None,
        }
    }

    /// Why the request is malformed, independent of the tenant's state.
    pub fn shape_error(&self) -> Option<String> {
        match (self.action, self.email) {
            (LifecycleAction::ResendEmail, None) => {
                Some("resend_email needs `email`: welcome, console_url or onboarding".into())
            }
            (LifecycleAction::ResendEmail, Some(_)) | (_, None) => None,
            (action, Some(_)) => Some(format!("{} takes no `email`", action.as_str())),
        }
    }
}

fn unknown_actor() -> String {
    "unknown".to_owned()
}

/// The state of one resource, as the workflow knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub kind: ResourceKind,
    pub name: String,
    pub allocated: bool,
}

/// What the `status` query returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStatus {
    pub tenant_id: Uuid,
    pub org: String,
    pub slug: String,
    pub host: String,
    pub incarnation: i32,
    pub state: TenantState,
    pub phase: Option<Phase>,
    pub next_stable_state: TenantState,
    pub resources: Vec<ResourceStatus>,
    pub last_error: Option<PhaseFailure>,
    pub emails: Vec<EmailOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        for s in [
            "provisioning",
            "active",
            "suspended",
            "compensating",
            "failed",
            "decommissioning",
            "decommissioned",
        ] {
            assert_eq!(TenantState::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn every_action_from_every_state() {
        use LifecycleAction::*;
        use TenantState::*;
        let states = [
            Provisioning,
            Active,
            Suspended,
            Compensating,
            Failed,
            Decommissioning,
            Decommissioned,
        ];
        let allowed = |action, state| {
            matches!(
                (action, state),
                (Retry, Failed)
                    | (Decommission, Provisioning | Active | Suspended | Failed)
                    | (Suspend, Active)
                    | (Resume, Suspended)
                    | (ReissueInvitation, Active | Suspended)
                    | (ResendEmail, Active)
            )
        };
        for action in [
            Retry,
            Decommission,
            Suspend,
            Resume,
            ReissueInvitation,
            ResendEmail,
        ] {
            for state in states {
                let refusal = action.refusal(state);
                assert_eq!(
                    refusal.is_none(),
                    allowed(action, state),
                    "{action:?} from {state:?}"
                );
                if let Some(why) = refusal {
                    assert!(
                        why.contains(state.as_str()) && why.contains(action.as_str()),
                        "{why}"
                    );
                }
            }
        }
        // Nothing but decommissioned frees the slot.
        assert_eq!(
            states
                .iter()
                .filter(|s| !s.holds_slot())
                .collect::<Vec<_>>(),
            [&Decommissioned]
        );
    }

    #[test]
    fn wrong_state_actions_are_refused_with_a_reason() {
        assert!(
            LifecycleAction::Suspend
                .refusal(TenantState::Active)
                .is_none()
        );
        let why = LifecycleAction::Retry.refusal(TenantState::Active).unwrap();
        assert_eq!(
            why,
            "cannot retry a tenant that is active; allowed from: failed"
        );
        assert!(
            LifecycleAction::Decommission
                .refusal(TenantState::Decommissioned)
                .is_some()
        );
    }
}
