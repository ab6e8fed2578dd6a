//! garrison-appraisal: the enroll and renew decisions of a Garrison attestor, as pure
//! functions. Typed evidence (an [`Answer`] to a challenge, the verified EK and AK), what is
//! known of the node ([`NodeHistory`]), the policy bundle in force
//! ([`garrison_policy::PolicyEngine`]), the site's rules ([`SiteRules`]) and the time go in;
//! an [`Appraisal`] comes out: an [`Admission`] (what to sign, and the record and node state
//! to write once it is signed) or a [`Refusal`] with its stable [`Reason`] code, plus what
//! the decision established on the way (policy digest, boot appraisal) for the record.
//!
//! The site attestor runs it live; an auditor's `audit replay` runs it again over a stored
//! [`EvidenceRecord`] ([`EvidenceRecord::decode`], [`EvidenceRecord::quote`]) with the
//! policy then in force, and the hub will reuse it. The credential-activation round trip,
//! which only a live exchange has, is a separate step ([`verify_activation`]) whose outcome
//! the decision takes as given.
//!
//! * [`appraise_enrollment`], [`appraise_renewal`]: the decisions.
//! * [`check_begin_sizes`], [`check_answer_sizes`], [`verify_ek`], [`check_ak`],
//!   [`check_monotonic`], [`check_selection`], [`pcr_values`]: their checks, for hosts that
//!   run one alone (an enrollment's first step).
//! * [`EvidenceRecord`], [`UnprovenRequest`]: what the log keeps of a request, written and
//!   read here only.
//! * [`DecisionRecord`]: a decision's log record, field for field the log's.
//!
//! What this crate must never do: I/O of any kind (files, network, database, environment),
//! async, read a clock (the time is a parameter), draw randomness (the host draws nonces and
//! secrets and signs certificates), link the log's storage or the gRPC stack, or panic on any
//! input. It must never allow what policy did not allow, hand out an identity outside the
//! site's scope or one of the site's own roles, nor let a node's TPM counters go back. The
//! [`BootCache`] is memoisation only: a decision is the same with [`BootCache::none`].
#![forbid(unsafe_code)]

mod appraisal;
mod boot;
mod evidence_record;
mod node;
mod policy_input;
mod record;
mod refusal;
mod sizes;

pub use appraisal::{
    Admission, Answer, Appraisal, Enrollment, Quote, QuotedPcr, SiteRules, appraise_enrollment,
    appraise_renewal, check_ak, check_monotonic, check_selection, pcr_values, verify_activation,
    verify_ek,
};
pub use boot::{AppraisedBoot, BootCache, sha256};
pub use evidence_record::{DecodeError, EvidenceRecord, Stage, UnprovenRequest};
pub use node::NodeHistory;
pub use record::{Decision, DecisionRecord, RecordKind, RefusalContext};
pub use refusal::{Reason, Refusal};
pub use sizes::{
    BeginEvidence, FieldLimits, MAX_PCR_DIGEST, check_ak_size, check_answer_sizes,
    check_begin_sizes, check_secret_size,
};
