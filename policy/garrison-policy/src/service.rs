//! The bundle in force, replaced atomically: evaluations clone an `Arc` and never wait for a
//! reload, and a refused bundle leaves the last good one serving.
//!
//! # Rollback across restarts
//! The sequence in force lives in memory, so a restarted host would accept any older
//! bundle. A host that must not roll back across restarts persists the sequence in force
//! (after [`PolicyService::new_with_floor`] and after every [`ReloadOutcome::Replaced`], i.e.
//! [`PolicyService::floor`]) and passes it back as `min_sequence` at start:
//! [`PolicyService::new_with_floor`] refuses a start bundle below it with
//! [`PolicyError::Rollback`], and reloads then refuse anything below the sequence in force as
//! before. A bundle *at* the floor is accepted at start (the floor is a number, not a digest:
//! it cannot tell the bundle that set it from another one signed with the same sequence).

use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value as Json;
use time::OffsetDateTime;

use crate::PolicyError;
use crate::bundle::{BundleFiles, BundleLimits};
use crate::decision::Decision;
use crate::engine::{BundleInfo, EvalLimits, PolicyEngine};
use crate::signature::{PolicyTrust, verify_bundle};

/// What a successful [`PolicyService::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The new bundle is in force.
    Replaced {
        previous: BundleInfo,
        current: BundleInfo,
    },
    /// The same bundle (same sequence and digest) was already in force.
    Unchanged,
}

/// Serves decisions from the bundle in force and swaps in verified newer bundles.
#[derive(Debug)]
pub struct PolicyService {
    trust: PolicyTrust,
    eval_limits: EvalLimits,
    bundle_limits: BundleLimits,
    current: RwLock<Arc<PolicyEngine>>,
    reloading: Mutex<()>,
    /// Lowest sequence ever accepted, as restored by the host at start.
    min_sequence: u64,
}

impl PolicyService {
    /// Start with a signed bundle, verified at `now`, with no rollback floor (any sequence is
    /// accepted at start). Same as [`Self::new_with_floor`] with `min_sequence` 0.
    pub fn new(
        trust: PolicyTrust,
        files: &BundleFiles,
        now: OffsetDateTime,
        eval_limits: EvalLimits,
        bundle_limits: BundleLimits,
    ) -> Result<Self, PolicyError> {
        Self::new_with_floor(trust, files, now, eval_limits, bundle_limits, 0)
    }

    /// Start with a signed bundle, verified at `now`, refusing it with
    /// [`PolicyError::Rollback`] if its sequence is below `min_sequence` (the sequence the
    /// host persisted from its previous run; see the module docs). Reloads refuse anything
    /// below the sequence in force, which is never below the floor.
    pub fn new_with_floor(
        trust: PolicyTrust,
        files: &BundleFiles,
        now: OffsetDateTime,
        eval_limits: EvalLimits,
        bundle_limits: BundleLimits,
        min_sequence: u64,
    ) -> Result<Self, PolicyError> {
        let verified = verify_bundle(files, &trust, now, &bundle_limits)?;
        let sequence = verified.manifest.sequence;
        if sequence < min_sequence {
            return Err(PolicyError::Rollback {
                in_force: min_sequence,
                got: sequence,
            });
        }
        let engine = PolicyEngine::from_verified(&verified, eval_limits)?;
        Ok(Self {
            trust,
            eval_limits,
            bundle_limits,
            current: RwLock::new(Arc::new(engine)),
            reloading: Mutex::new(()),
            min_sequence,
        })
    }

    /// The sequence to persist as the next start's `min_sequence`: that of the bundle in force
    /// (never below the floor given at start).
    pub fn floor(&self) -> u64 {
        self.current().info().sequence.max(self.min_sequence)
    }

    /// The engine in force (keep the `Arc` for as long as one request needs it).
    pub fn current(&self) -> Arc<PolicyEngine> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Decide with the bundle in force. An `Err` must be treated as a deny by the caller.
    pub fn decide(&self, input: Json) -> Result<Decision, PolicyError> {
        self.current().evaluate(input)
    }

    /// [`Self::decide`] on raw JSON bytes.
    pub fn decide_json(&self, input: &[u8]) -> Result<Decision, PolicyError> {
        self.current().evaluate_json(input)
    }

    /// Verify, rollback-check and compile `files`, then put them in force. On any error the
    /// bundle in force is untouched and keeps serving.
    pub fn reload(
        &self,
        files: &BundleFiles,
        now: OffsetDateTime,
    ) -> Result<ReloadOutcome, PolicyError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let verified = verify_bundle(files, &self.trust, now, &self.bundle_limits)?;
        let previous = self.current().info().clone();
        let sequence = verified.manifest.sequence;
        let floor = previous.sequence.max(self.min_sequence);
        if sequence < floor {
            return Err(PolicyError::Rollback {
                in_force: floor,
                got: sequence,
            });
        }
        if sequence == previous.sequence {
            return if verified.digest == previous.digest {
                Ok(ReloadOutcome::Unchanged)
            } else {
                Err(PolicyError::SequenceReused {
                    sequence,
                    in_force: previous.digest,
                    got: verified.digest,
                })
            };
        }
        let engine = Arc::new(PolicyEngine::from_verified(&verified, self.eval_limits)?);
        let current = engine.info().clone();
        match self.current.write() {
            Ok(mut guard) => *guard = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
        Ok(ReloadOutcome::Replaced { previous, current })
    }

    /// Put `engine`, taken from [`Self::current`] before a reload, back in force: for a
    /// caller that could not record the reload it made, so that no bundle stays in force
    /// unrecorded.
    pub fn reinstate(&self, engine: Arc<PolicyEngine>) {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        match self.current.write() {
            Ok(mut guard) => *guard = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}
