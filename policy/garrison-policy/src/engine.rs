//! Compiling a bundle once and evaluating it per request, inside limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use regorus::rvm::vm::VmError;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{CompiledPolicy, Engine, PolicyLengthConfig, Value};
use serde_json::Value as Json;

use crate::bundle::{BundleFiles, DATA_FILE, policy_files, sha256_hex};
use crate::decision::{DECISION_RULES, Decision};
use crate::input::{InputSection, check_shape_with, to_rego_with};
use crate::signature::VerifiedBundle;
use crate::{PolicyError, source_check};

/// The package every policy must declare.
pub const ADMISSION_PACKAGE: &str = "garrison.admission";
/// Package of the host's wrapper module; policies may not declare it.
const HOST_PACKAGE: &str = "garrison_host";
const HOST_ENTRY_POINT: &str = "data.garrison_host.decision";
/// How often (in VM instructions / interpreter work units) the clock is read.
const TIMER_CHECK_INTERVAL: u32 = 32;

/// Limits applied to every evaluation. There are no unlimited settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalLimits {
    /// Wall-clock budget of one evaluation, checked every few VM instructions.
    pub time_limit: Duration,
    /// Most RVM instructions one evaluation may execute.
    pub max_instructions: usize,
    /// Largest accepted input document (bytes of JSON).
    pub max_input_bytes: usize,
    /// Largest accepted decision output (bytes of JSON).
    pub max_decision_bytes: usize,
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self {
            time_limit: Duration::from_millis(50),
            max_instructions: 1_000_000,
            max_input_bytes: 1024 * 1024,
            max_decision_bytes: 64 * 1024,
        }
    }
}

/// Who made a bundle and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub name: String,
    pub sequence: u64,
    /// Hex SHA-256 of manifest.json (unsigned source trees: of their sorted file digests).
    pub digest: String,
    /// The signer's SPIFFE ID, or `unsigned` for a source tree under test.
    pub signer: String,
}

/// A bundle compiled for evaluation. Cheap to share behind an `Arc`; evaluations on several
/// threads at once each use their own VM from a small pool.
pub struct PolicyEngine {
    info: BundleInfo,
    limits: EvalLimits,
    program: Arc<Program>,
    compiled: CompiledPolicy,
    data: Value,
    interpreter: Engine,
    pool: Mutex<Vec<RegoVM>>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("info", &self.info)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Compile a verified bundle.
    pub fn from_verified(bundle: &VerifiedBundle, limits: EvalLimits) -> Result<Self, PolicyError> {
        let info = BundleInfo {
            name: bundle.manifest.name.clone(),
            sequence: bundle.manifest.sequence,
            digest: bundle.digest.clone(),
            signer: bundle.signer.clone(),
        };
        Self::compile(info, &bundle.files, limits)
    }

    /// Compile an unsigned policy source tree (for `policy test` and development only: never
    /// load one of these to serve requests).
    pub fn from_source(
        name: &str,
        files: &BundleFiles,
        limits: EvalLimits,
    ) -> Result<Self, PolicyError> {
        let listing: String = policy_files(files)
            .map(|(n, b)| format!("{n} {}\n", sha256_hex(b)))
            .collect();
        let info = BundleInfo {
            name: name.to_owned(),
            sequence: 0,
            digest: sha256_hex(listing.as_bytes()),
            signer: "unsigned".to_owned(),
        };
        Self::compile(info, files, limits)
    }

    /// Parse, check and compile the policy files of a bundle.
    pub fn compile(
        info: BundleInfo,
        files: &BundleFiles,
        limits: EvalLimits,
    ) -> Result<Self, PolicyError> {
        let mut engine = new_engine(&limits);
        let data = load_modules(&mut engine, files)?;
        let defined = defined_rules(&engine);
        engine
            .add_policy("garrison_host.rego".to_owned(), host_module(&defined))
            .map_err(compile_error)?;
        let interpreter = engine.clone();
        let entry: regorus::Rc<str> = HOST_ENTRY_POINT.into();
        let compiled = engine
            .compile_with_entrypoint(&entry)
            .map_err(compile_error)?;
        let program =
            Compiler::compile_from_policy(&compiled, &[HOST_ENTRY_POINT]).map_err(compile_error)?;
        let built = Self {
            info,
            limits,
            program,
            compiled,
            data,
            interpreter,
            pool: Mutex::new(Vec::new()),
        };
        // Fail at load, not on the first request, if the program rejects the data.
        built.new_vm()?;
        Ok(built)
    }

    /// Which bundle this is.
    pub fn info(&self) -> &BundleInfo {
        &self.info
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &EvalLimits {
        &self.limits
    }

    /// Decide on a JSON input document (bytes as received).
    pub fn evaluate_json(&self, input: &[u8]) -> Result<Decision, PolicyError> {
        self.evaluate_ref(&parse_input(input, &self.limits)?)
    }

    /// Decide on an input document.
    pub fn evaluate(&self, input: Json) -> Result<Decision, PolicyError> {
        self.evaluate_ref(&input)
    }

    /// Decide on an input document the caller keeps (nothing is cloned).
    pub fn evaluate_ref(&self, input: &Json) -> Result<Decision, PolicyError> {
        self.evaluate_sections(input, &[])
    }

    /// Decide on an input made of `base` (a JSON object) and top-level `sections` converted
    /// beforehand ([`InputSection`]), e.g. `("boot", &claims)`. The whole input meets the
    /// same contract and limits as one given in a piece; a section also present in `base` is
    /// refused.
    pub fn evaluate_sections(
        &self,
        base: &Json,
        sections: &[(&str, &InputSection)],
    ) -> Result<Decision, PolicyError> {
        let time_unix = check_shape_with(base, sections)?;
        let input = to_rego_with(base, sections, time_unix, self.limits.max_input_bytes)?;
        let mut vm = self.take_vm()?;
        vm.set_input(input);
        let output = vm.execute().map_err(|e| self.vm_error(e))?;
        // Only a VM that finished cleanly goes back to the pool, without this request's input.
        vm.set_input(Value::Undefined);
        self.return_vm(vm);
        // Measure before converting, so an oversized decision is never copied.
        let mut size = ByteCount(0);
        serde_json::to_writer(&mut size, &output).map_err(|e| PolicyError::Evaluation {
            message: e.to_string(),
        })?;
        if size.0 > self.limits.max_decision_bytes {
            return Err(PolicyError::DecisionTooLarge {
                limit: self.limits.max_decision_bytes,
                got: size.0,
            });
        }
        let json = serde_json::to_value(&output).map_err(|e| PolicyError::Evaluation {
            message: e.to_string(),
        })?;
        Ok(Decision::from_output(&json, &self.info.digest))
    }

    /// Every rule of `data.garrison.admission` for this input (tree-walking interpreter,
    /// same time limit): what `policy eval --explain` prints.
    pub fn explain(&self, input: Json) -> Result<Json, PolicyError> {
        let input = self.input_value(&input)?;
        let mut engine = self.interpreter.clone();
        engine.set_input(input);
        let results = engine
            .eval_query(format!("data.{ADMISSION_PACKAGE}"), false)
            .map_err(|e| self.eval_error(e.to_string()))?;
        let value = results
            .result
            .first()
            .and_then(|r| r.expressions.first())
            .map(|e| e.value.clone())
            .unwrap_or(Value::Undefined);
        serde_json::to_value(&value).map_err(|e| PolicyError::Evaluation {
            message: e.to_string(),
        })
    }

    /// Check the input contract and build the VM's input value.
    fn input_value(&self, input: &Json) -> Result<Value, PolicyError> {
        let time_unix = check_shape_with(input, &[])?;
        to_rego_with(input, &[], time_unix, self.limits.max_input_bytes)
    }

    fn new_vm(&self) -> Result<RegoVM, PolicyError> {
        let mut vm = RegoVM::new_with_policy(self.compiled.clone());
        vm.load_program(self.program.clone());
        vm.set_data(self.data.clone())
            .map_err(|e| PolicyError::DataMalformed {
                reason: e.to_string(),
            })?;
        vm.set_max_instructions(self.limits.max_instructions);
        vm.set_execution_timer_config(Some(timer(&self.limits)));
        Ok(vm)
    }

    fn take_vm(&self) -> Result<RegoVM, PolicyError> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        match pooled {
            Some(vm) => Ok(vm),
            None => self.new_vm(),
        }
    }

    fn return_vm(&self, vm: RegoVM) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < 64
        {
            pool.push(vm);
        }
    }

    fn vm_error(&self, error: VmError) -> PolicyError {
        match error {
            VmError::InstructionLimitExceeded { limit, .. } => {
                PolicyError::EvaluationInstructionLimit { limit }
            }
            VmError::TimeLimitExceeded { .. } => PolicyError::EvaluationTimeLimit {
                limit_ms: self.limits.time_limit.as_millis(),
            },
            other => self.eval_error(other.to_string()),
        }
    }

    fn eval_error(&self, message: String) -> PolicyError {
        if message.contains("time limit") {
            return PolicyError::EvaluationTimeLimit {
                limit_ms: self.limits.time_limit.as_millis(),
            };
        }
        PolicyError::Evaluation { message }
    }
}

/// Counts the bytes of JSON written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn new_engine(limits: &EvalLimits) -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(timer(limits));
    engine.set_policy_length_config(PolicyLengthConfig::default());
    engine
}

fn timer(limits: &EvalLimits) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: limits.time_limit,
        check_interval: std::num::NonZeroU32::new(TIMER_CHECK_INTERVAL)
            .unwrap_or(std::num::NonZeroU32::MIN),
    }
}

fn parse_input(input: &[u8], limits: &EvalLimits) -> Result<Json, PolicyError> {
    if input.len() > limits.max_input_bytes {
        return Err(PolicyError::InputTooLarge {
            limit: limits.max_input_bytes,
            got: input.len(),
        });
    }
    serde_json::from_slice(input).map_err(|e| PolicyError::InputMalformed {
        reason: e.to_string(),
    })
}

/// Add every `.rego` file (after the forbidden-builtin scan) and return `data.json`.
fn load_modules(engine: &mut Engine, files: &BundleFiles) -> Result<Value, PolicyError> {
    let mut declares_admission = false;
    for (name, bytes) in policy_files(files).filter(|(n, _)| n.ends_with(".rego")) {
        let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::PolicyCompile {
            message: format!("{name} is not UTF-8"),
        })?;
        source_check::check_module(name, text)?;
        let package = engine
            .add_policy(name.clone(), text.to_owned())
            .map_err(compile_error)?;
        let package = package.strip_prefix("data.").unwrap_or(&package);
        if package == HOST_PACKAGE || package.starts_with("garrison_host.") {
            return Err(PolicyError::ReservedPackage {
                file: name.clone(),
                package: package.to_owned(),
            });
        }
        declares_admission |= package == ADMISSION_PACKAGE;
    }
    if !declares_admission {
        return Err(PolicyError::PolicyCompile {
            message: format!("no module declares package {ADMISSION_PACKAGE}"),
        });
    }
    let data = match files.get(DATA_FILE) {
        Some(bytes) => Value::from_json_str(&String::from_utf8_lossy(bytes)).map_err(|e| {
            PolicyError::DataMalformed {
                reason: e.to_string(),
            }
        })?,
        None => Value::new_object(),
    };
    if data.as_object().is_err() {
        return Err(PolicyError::DataMalformed {
            reason: "data.json is not an object".to_owned(),
        });
    }
    engine
        .add_data(data.clone())
        .map_err(|e| PolicyError::DataMalformed {
            reason: e.to_string(),
        })?;
    Ok(data)
}

/// The decision rules the policy defines (a reference to an undefined rule would make the
/// whole wrapper misbehave, so only defined ones are wrapped; the others read as undefined).
fn defined_rules(engine: &Engine) -> Vec<&'static str> {
    DECISION_RULES
        .into_iter()
        .filter(|rule| {
            let path: regorus::Rc<str> = format!("data.{ADMISSION_PACKAGE}.{rule}").into();
            engine.clone().compile_with_entrypoint(&path).is_ok()
        })
        .collect()
}

/// `decision := {"allow": [v | v := data.garrison.admission.allow], ...}`: each rule as a
/// zero- or one-element array, so that an undefined rule is visible rather than making the
/// whole decision undefined.
fn host_module(defined: &[&str]) -> String {
    let fields: Vec<String> = defined
        .iter()
        .map(|rule| format!("  \"{rule}\": [v | v := data.{ADMISSION_PACKAGE}.{rule}]"))
        .collect();
    format!(
        "package {HOST_PACKAGE}\n\ndecision := {{\n{}\n}}\n",
        fields.join(",\n")
    )
}

fn compile_error(error: impl std::fmt::Display) -> PolicyError {
    PolicyError::PolicyCompile {
        message: error.to_string(),
    }
}
