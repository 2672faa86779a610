//! Grouping one claim: read the codes' attributes from the tables, build the claim's mask
//! of atoms, evaluate the formulas (pre-MDC, reroutes, the principal diagnosis's MDC) for
//! the initial DRG, apply the HAC rules, evaluate again for the final DRG, and mark which
//! codes decided each.

use super::formula::{Expr, Mask, Matched, Scope};
use super::tables::{Diagnosis, Formula, Procedure, Tables};
use super::{
    Claim, DiagnosisResult, GroupResult, HospitalStatus, Impact, ProcedureResult, ReturnCode,
    Severity, Sex,
};

const DIED: i32 = 20;
const AMA: i32 = 7;
/// The discharge statuses the grouper knows; any other is invalid.
const DISCHARGE_STATUSES: &[i32] = &[
    1, 2, 3, 4, 5, 6, 7, 20, 21, 30, 43, 50, 51, 61, 62, 63, 64, 65, 66, 69, 70, 81, 82, 83, 84,
    85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
];
/// Transfers that the neonate formulas treat apart.
const TRANSFERS: &[i32] = &[2, 5, 66, 82, 85, 94];
/// DRGs of procedures unrelated to the principal diagnosis; marking looks in MDC 29.
const UNRELATED_DRGS: &[u16] = &[981, 982, 983, 987, 988, 989];
/// The HACs whose formula needs a procedure.
const SIG_TRAUMAS: &[&str] = &[
    "sthead", "stchest", "stabdom", "stkidney", "sturin", "stpel", "stuplimb", "stlolimb",
];
const BILATERALS: &[&str] = &[
    "righthip",
    "lefthip",
    "leftknee",
    "rightknee",
    "leftankle",
    "rightankle",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum HacStatus {
    NotEvaluated,
    Met,
    NotMet,
    Excluded,
    Exempt,
}

struct Hac {
    number: u8,
    name: u32,
    status: HacStatus,
}

struct Dx<'t> {
    code: String,
    poa: u8,
    info: Option<&'t Diagnosis>,
    excluded: bool,
    death_excluded: bool,
    hacs: Vec<Hac>,
    impact: Impact,
}

impl Dx<'_> {
    fn severity(&self) -> Severity {
        self.info.map_or(Severity::None, |d| d.severity)
    }

    fn has(&self, name: u32) -> bool {
        self.info
            .is_some_and(|d| d.attributes.binary_search(&name).is_ok())
    }

    fn has_any(&self, name: u32) -> bool {
        self.info.is_some_and(|d| {
            d.attributes.binary_search(&name).is_ok()
                || d.category_attributes.binary_search(&name).is_ok()
        })
    }

    fn hac_met(&self) -> bool {
        self.hacs.iter().any(|h| h.status == HacStatus::Met)
    }

    fn poa_invalid(&self) -> bool {
        matches!(self.poa, b'E' | b' ' | b'1' | 0)
    }
}

struct Pr<'t> {
    code: String,
    info: Option<&'t Procedure>,
    /// MDCs (bits) in which a completed cluster suppresses this procedure's attributes.
    suppressed: u32,
    clusters: Vec<u16>,
    impact: Impact,
}

/// A matched atom as (scope, attribute name), or the matched severity.
type Resolved = (Option<(Scope, u32)>, Option<Severity>);

/// The state of one claim through grouping.
struct Work<'t, 'c> {
    t: &'t Tables,
    claim: &'c Claim,
    pdx: Dx<'t>,
    pdx_mdc: Option<u8>,
    pdx_sex_conflict: bool,
    sdx: Vec<Dx<'t>>,
    procedures: Vec<Pr<'t>>,
    /// Completed clusters: (cluster number, its attributes).
    clusters: Vec<(u16, Option<&'t Procedure>)>,
    discharge_valid: bool,
    mask: Mask,
}

/// The outcome of one grouping pass.
#[derive(Clone, Copy)]
struct Pass<'t> {
    drg: u16,
    mdc: u8,
    severity: Severity,
    winner: Option<&'t Formula>,
    /// The formula marking reads: the principal diagnosis's MDC's, else a reroute's,
    /// else the pre-MDC one (a reroute to MDC 29 marks as its rerouting formula).
    marking: Option<&'t Formula>,
    return_code: ReturnCode,
}

impl Pass<'_> {
    fn ungroupable(return_code: ReturnCode) -> Pass<'static> {
        Pass {
            drg: 999,
            mdc: 0,
            severity: Severity::None,
            winner: None,
            marking: None,
            return_code,
        }
    }
}

fn poa_byte(poa: Option<&str>) -> u8 {
    poa.and_then(|p| p.bytes().next()).unwrap_or(b' ')
}

pub fn group(t: &Tables, claim: &Claim) -> GroupResult {
    let mut work = prepare(t, claim);
    let names = &t.names;

    let (initial, final_pass) = if work.pdx.has(names.ecode) {
        let pass = Pass::ungroupable(ReturnCode::DxCannotBePdx);
        (pass, pass)
    } else if !work.discharge_valid
        && work
            .sdx
            .iter()
            .any(|d| d.has(names.mccalive) || d.has(names.mccalive_upper))
    {
        let pass = Pass::ungroupable(ReturnCode::InvalidDischargeStatus);
        (pass, pass)
    } else {
        let initial = work.pass(false);
        if initial.return_code != ReturnCode::Ok
            && initial.winner.is_none()
            && initial.drg == 999
            && is_error(initial.return_code)
        {
            (initial, initial)
        } else {
            let hac_code = work.hospital_acquired_conditions();
            let final_pass = match hac_code {
                ReturnCode::Ok => work.pass(true),
                code => Pass::ungroupable(code),
            };
            (initial, final_pass)
        }
    };
    work.mark(&initial, Impact::Initial);
    if final_pass.return_code == ReturnCode::Ok || final_pass.winner.is_some() {
        work.mark(&final_pass, Impact::Final);
    }
    // When the HAC rules changed the DRG (as the marking formulas see it), the
    // hospital-acquired conditions decided the final one.
    let marking_drg = |pass: &Pass<'_>| pass.marking.map(|f| f.drg);
    if marking_drg(&initial) != marking_drg(&final_pass) && final_pass.return_code == ReturnCode::Ok
    {
        for dx in work.sdx.iter_mut().filter(|d| !d.hacs.is_empty()) {
            dx.impact = dx.impact.add(Impact::Final);
        }
    }
    work.result(&initial, &final_pass)
}

fn is_error(code: ReturnCode) -> bool {
    !matches!(code, ReturnCode::Ok | ReturnCode::Ungroupable)
}

fn prepare<'t, 'c>(t: &'t Tables, claim: &'c Claim) -> Work<'t, 'c> {
    let pdx_code = crate::normalize_code(&claim.pdx);
    let pdx_info = t.diagnoses.get(&pdx_code);
    let mut sdx: Vec<Dx<'t>> = claim
        .sdx
        .iter()
        .filter(|d| !d.code.trim().is_empty())
        .map(|d| {
            let code = crate::normalize_code(&d.code);
            let info = t.diagnoses.get(&code);
            let hacs = info.map_or_else(Vec::new, |i| hacs_of(t, &i.hac_attributes));
            Dx {
                code,
                poa: poa_byte(d.poa.as_deref()),
                info,
                excluded: false,
                death_excluded: false,
                hacs,
                impact: Impact::None,
            }
        })
        .collect();
    // Clinical significance: MCC before CC before the rest, then by code.
    sdx.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then_with(|| a.code.cmp(&b.code))
    });

    let mut procedures: Vec<Pr<'t>> = claim
        .procedures
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let code = crate::normalize_code(p);
            let info = t.procedures.get(&code);
            Pr {
                code,
                info,
                suppressed: 0,
                clusters: Vec::new(),
                impact: Impact::None,
            }
        })
        .collect();
    procedures.sort_by(|a, b| a.code.cmp(&b.code));
    let clusters = complete_clusters(t, &mut procedures);

    if let Some(group) = pdx_info.map(|i| i.exclusion_group).filter(|g| *g != 0)
        && let Some(excluded) = t.exclusions.get(&group)
    {
        for dx in &mut sdx {
            if excluded.binary_search(&dx.code).is_ok() {
                dx.excluded = true;
            }
        }
    }
    if claim.discharge_status == DIED {
        for dx in &mut sdx {
            if dx.has(t.names.mccalive) || dx.has(t.names.mccalive_upper) {
                dx.death_excluded = true;
            }
        }
    }

    let mut pdx_mdc = pdx_info.map(|i| i.mdc);
    let mut pdx_sex_conflict = false;
    if pdx_info.is_some()
        && let Some(&(male, female)) = t.sex_mdc.get(&pdx_code)
    {
        let by_sex = match claim.sex {
            Sex::Male => male,
            Sex::Female => female,
            Sex::Unknown => None,
        };
        match by_sex {
            Some(mdc) => pdx_mdc = Some(mdc),
            None => pdx_sex_conflict = true,
        }
    }
    let pdx = Dx {
        code: pdx_code,
        poa: poa_byte(claim.pdx_poa.as_deref()),
        info: pdx_info,
        excluded: false,
        death_excluded: false,
        hacs: Vec::new(),
        impact: Impact::None,
    };
    let mut work = Work {
        t,
        claim,
        pdx,
        pdx_mdc,
        pdx_sex_conflict,
        sdx,
        procedures,
        clusters,
        discharge_valid: DISCHARGE_STATUSES.contains(&claim.discharge_status),
        mask: Mask::new(t.atoms.count),
    };
    work.mask = work.build_mask();
    work
}

fn hacs_of(t: &Tables, hac_attributes: &[u32]) -> Vec<Hac> {
    hac_attributes
        .iter()
        .filter_map(|&name| {
            let text = &t.atoms.name_list[name as usize];
            let lower = text.to_ascii_lowercase();
            let digits: String = lower
                .strip_prefix("hac")?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let number: u8 = digits.parse().ok()?;
            Some(Hac {
                number,
                name,
                status: HacStatus::NotEvaluated,
            })
        })
        .collect()
}

/// Finds the clusters the claim's procedures complete (every choice of the cluster has one
/// of its codes on the claim); their procedures' attributes are then suppressed in the
/// cluster's MDCs, and the cluster's own attributes count instead.
fn complete_clusters<'t>(
    t: &'t Tables,
    procedures: &mut [Pr<'t>],
) -> Vec<(u16, Option<&'t Procedure>)> {
    let mut candidates: Vec<u16> = procedures
        .iter()
        .filter_map(|p| t.cluster_map.get(&p.code))
        .flatten()
        .copied()
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let mut completed = Vec::new();
    for number in candidates {
        let Some(cluster) = t.clusters.get(&number) else {
            continue;
        };
        let mut satisfied = vec![false; cluster.choices.len()];
        let mut chosen: Vec<usize> = Vec::new();
        for (at, procedure) in procedures.iter().enumerate() {
            if let Some(choice) = cluster
                .choices
                .iter()
                .position(|c| c.contains(&procedure.code))
            {
                satisfied[choice] = true;
                chosen.push(at);
            }
            if satisfied.iter().all(|s| *s) {
                for &at in &chosen {
                    let chosen_code = procedures[at].code.clone();
                    for p in procedures.iter_mut().filter(|p| p.code == chosen_code) {
                        p.suppressed |= cluster.suppressed_mdcs;
                        p.clusters.push(number);
                    }
                }
                completed.push((number, t.procedures.get(&cluster.name)));
                break;
            }
        }
    }
    completed
}

impl<'t> Work<'t, '_> {
    fn add(&self, mask: &mut Mask, scope: Scope, name: u32, suppressed: u32) {
        if let Some(atom) = self.t.atoms.get(scope, name) {
            mask.add(atom, suppressed);
        }
    }

    fn build_mask(&self) -> Mask {
        let t = self.t;
        let n = &t.names;
        let mut mask = Mask::new(t.atoms.count);
        let mut bilateral = 0u8;
        let mut vessels = 0u32;
        let mut count = |name: u32| {
            let text = &t.atoms.name_list[name as usize];
            if let Some(i) = BILATERALS.iter().position(|b| b == text) {
                bilateral |= 1 << i;
            }
            if text.starts_with("vessel")
                && let Some(d) = text
                    .chars()
                    .last()
                    .and_then(|c| c.to_digit(10))
                    .filter(|d| *d >= 1)
            {
                vessels += d;
            }
        };
        for dx in &self.sdx {
            let Some(info) = dx.info else { continue };
            for &name in info
                .attributes
                .iter()
                .chain(&info.category_attributes)
                .chain(&info.hac_attributes)
            {
                self.add(&mut mask, Scope::Any, name, 0);
                self.add(&mut mask, Scope::Sdx, name, 0);
                count(name);
            }
        }
        let (mut eluting, mut non_eluting) = (0u32, 0u32);
        let (mut single_fusions, mut single_anterior, mut single_posterior1) = (0u32, 0u32, 0u32);
        let (mut anterior_fusions, mut posterior_fusions, mut single_fusion_counter) =
            (0u32, 0u32, 0u32);
        for pr in &self.procedures {
            let Some(info) = pr.info else { continue };
            let mut stent_weight = 0;
            let (mut drug, mut plain, mut or_procedure) = (false, false, false);
            for &name in &info.attributes {
                self.add(&mut mask, Scope::Any, name, pr.suppressed);
                count(name);
                let text = t.atoms.name_list[name as usize].as_str();
                if text.starts_with("stent")
                    && let Some(d) = text
                        .chars()
                        .last()
                        .and_then(|c| c.to_digit(10))
                        .filter(|d| (1..=4).contains(d))
                {
                    stent_weight = d;
                }
                drug |= name == n.nordrugstent;
                plain |= name == n.norstent;
                or_procedure |= name == n.d468 || name == n.d477;
                match text {
                    "sglantfuse" => {
                        single_fusions += 1;
                        single_anterior += 1;
                        single_fusion_counter += 1;
                    }
                    "sglpostfuse1" => {
                        single_fusions += 1;
                        single_posterior1 += 1;
                    }
                    "sglantsectXfuse" => anterior_fusions += 1,
                    "sglpostfuse" => {
                        posterior_fusions += 1;
                        single_fusion_counter += 1;
                    }
                    _ => {}
                }
            }
            if or_procedure {
                self.add(&mut mask, Scope::Any, n.orproc, pr.suppressed);
            }
            if drug {
                eluting += stent_weight;
            }
            if plain {
                non_eluting += stent_weight;
            }
        }
        for (_, info) in &self.clusters {
            if let Some(info) = info {
                for &name in &info.attributes {
                    self.add(&mut mask, Scope::Any, name, 0);
                    count(name);
                }
            }
        }
        if let Some(info) = self.pdx.info {
            for &name in info
                .attributes
                .iter()
                .chain(&info.hac_attributes)
                .chain(&info.category_attributes)
            {
                self.add(&mut mask, Scope::Any, name, 0);
                self.add(&mut mask, Scope::Pdx, name, 0);
                count(name);
            }
        } else {
            self.add(&mut mask, Scope::Any, n.invalid_pdx, 0);
            self.add(&mut mask, Scope::Pdx, n.invalid_pdx, 0);
        }
        if matches!(
            self.pdx.code.as_bytes().first(),
            Some(b'V' | b'W' | b'X' | b'Y')
        ) {
            self.add(&mut mask, Scope::Any, n.pdx_ecode, 0);
            self.add(&mut mask, Scope::Pdx, n.pdx_ecode, 0);
        }
        if self.pdx.has(n.incident)
            && self
                .sdx
                .iter()
                .filter(|d| d.info.is_some())
                .all(|d| d.has(n.incident))
        {
            self.add(&mut mask, Scope::Only, n.incident, 0);
        }
        if self.claim.sex == Sex::Unknown && self.pdx_sex_conflict {
            self.add(&mut mask, Scope::Any, n.invalid_sex, 0);
        }
        if self.pdx_mdc == Some(20) {
            self.add(&mut mask, Scope::Any, n.mdc20_fall_thru, 0);
        }
        let status = self.claim.discharge_status;
        if status != DIED {
            self.add(&mut mask, Scope::Any, n.alive, 0);
        }
        if status == AMA {
            self.add(&mut mask, Scope::Any, n.ama, 0);
        }
        if status == DIED {
            self.add(&mut mask, Scope::Any, n.died, 0);
        }
        if !self.discharge_valid {
            self.add(&mut mask, Scope::Any, n.invalid_dstat, 0);
        }
        if TRANSFERS.contains(&status) {
            self.add(&mut mask, Scope::Any, n.xfrnba, 0);
        }
        self.add(&mut mask, Scope::Any, n.anydx, 0);

        let traumas = SIG_TRAUMAS
            .iter()
            .filter(|st| {
                let Some(&name) = t.atoms.names.get(**st) else {
                    return false;
                };
                self.pdx.has(name) || self.sdx.iter().any(|d| d.has(name))
            })
            .count();
        let flags = [
            (traumas >= 2, n.multst),
            (bilateral.count_ones() > 1, n.bilateral),
            (non_eluting >= 4, n.four_non_drug_eluting_stents),
            (eluting >= 4, n.four_drug_eluting_stents),
            (vessels >= 4, n.four_vessels),
            (eluting + non_eluting >= 4, n.four_stents),
            (single_fusions > 1, n.multfuse),
            (anterior_fusions > 1, n.sglantsectxctr),
            (posterior_fusions > 1, n.sglpostfusectr),
            (single_fusion_counter >= 3, n.singlefusionctr),
            (single_anterior >= 2, n.sglantctr),
            (single_posterior1 >= 2, n.sglpost1ctr),
        ];
        for (on, name) in flags {
            if on {
                self.add(&mut mask, Scope::Any, name, 0);
            }
        }
        mask
    }

    /// The claim's severity for one formula: the highest severity of the secondary
    /// diagnoses that count (not excluded, not suppressed by the formula, and in the final
    /// grouping not a hospital-acquired condition).
    fn severity(&self, suppression: &[u32], final_pass: bool) -> Severity {
        let mut severity = Severity::None;
        for dx in &self.sdx {
            if dx.excluded || dx.death_excluded || (final_pass && dx.hac_met()) {
                continue;
            }
            if !suppression.is_empty() && suppression.iter().any(|s| dx.has(*s)) {
                continue;
            }
            severity = severity.max(dx.severity());
        }
        severity
    }

    /// The first formula of an MDC that holds; `Err` for a formula that stops grouping.
    fn group_mdc(
        &self,
        mdc: u8,
        final_pass: bool,
    ) -> Result<Option<(&'t Formula, Severity)>, ReturnCode> {
        let Some(formulas) = self.t.formulas.get(usize::from(mdc)) else {
            return Ok(None);
        };
        let plain = self.severity(&[], final_pass);
        for formula in formulas {
            let severity = if formula.suppression.is_empty() {
                plain
            } else {
                self.severity(&formula.suppression, final_pass)
            };
            if !formula.expr.eval(&self.mask, mdc, severity) {
                continue;
            }
            if formula.drg == 0 && formula.reroute_mdc == 0 {
                match formula.error {
                    Some(code) => return Err(code),
                    None => continue,
                }
            }
            return Ok(Some((formula, severity)));
        }
        Ok(None)
    }

    /// One grouping pass: pre-MDC formulas, reroutes, then the principal diagnosis's MDC.
    fn pass(&self, final_pass: bool) -> Pass<'t> {
        match self.try_pass(final_pass) {
            Ok(pass) => pass,
            Err(code) => Pass::ungroupable(code),
        }
    }

    fn try_pass(&self, final_pass: bool) -> Result<Pass<'t>, ReturnCode> {
        let mut drg: Option<u16> = None;
        let mut mdc = 0u8;
        let mut severity = Severity::None;
        let mut winner: Option<&'t Formula> = None;
        let mut pre_match: Option<&'t Formula> = None;
        let mut pdx_match: Option<&'t Formula> = None;
        let mut reroute_match: Option<&'t Formula> = None;
        let same = |a: Option<&Formula>, b: Option<&Formula>| match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        };

        if let Some((formula, s)) = self.group_mdc(0, final_pass)? {
            drg = Some(formula.drg);
            mdc = self.pdx_mdc.unwrap_or(0);
            severity = s;
            winner = Some(formula);
            pre_match = Some(formula);
        }
        let reroute = |from: Option<&'t Formula>,
                       is_pre: bool,
                       drg: &mut Option<u16>,
                       mdc: &mut u8,
                       severity: &mut Severity,
                       winner: &mut Option<&'t Formula>|
         -> Result<(), ReturnCode> {
            let Some(from) = from.filter(|f| f.reroute_mdc != 0) else {
                return Ok(());
            };
            let target = from.reroute_mdc;
            if let Some((formula, s)) = self.group_mdc(target, final_pass)? {
                *drg = Some(formula.drg);
                if is_pre {
                    *mdc = target;
                }
                *severity = s;
                *winner = Some(formula);
                if formula.reroute_mdc != 0 {
                    let second = formula.reroute_mdc;
                    if let Some((formula, s)) = self.group_mdc(second, final_pass)? {
                        *drg = Some(formula.drg);
                        *severity = s;
                        *winner = Some(formula);
                    }
                }
            }
            Ok(())
        };
        let before = winner;
        reroute(
            pre_match,
            true,
            &mut drg,
            &mut mdc,
            &mut severity,
            &mut winner,
        )?;
        if !same(before, winner) {
            reroute_match = winner;
        }
        if winner.is_none()
            && let Some(pdx_mdc) = self.pdx_mdc
            && let Some((formula, s)) = self.group_mdc(pdx_mdc, final_pass)?
        {
            drg = Some(formula.drg);
            mdc = pdx_mdc;
            severity = s;
            winner = Some(formula);
            pdx_match = Some(formula);
        }
        let (from, is_pre) = match pdx_match {
            Some(f) => (Some(f), false),
            None => (pre_match, true),
        };
        let before = winner;
        reroute(from, is_pre, &mut drg, &mut mdc, &mut severity, &mut winner)?;
        if !same(before, winner) {
            reroute_match = winner;
        }
        Ok(match drg {
            Some(drg) => Pass {
                drg,
                mdc,
                severity,
                winner,
                marking: pdx_match.or(reroute_match).or(pre_match),
                return_code: ReturnCode::Ok,
            },
            None => Pass::ungroupable(ReturnCode::Ungroupable),
        })
    }

    /// Evaluates each secondary diagnosis's HACs and returns the return code the HAC rules
    /// impose (`Ok` when the claim groups on).
    fn hospital_acquired_conditions(&mut self) -> ReturnCode {
        let status = self.claim.hospital_status;
        if status == HospitalStatus::Exempt {
            for dx in &mut self.sdx {
                for hac in &mut dx.hacs {
                    hac.status = HacStatus::Exempt;
                }
            }
            return ReturnCode::Ok;
        }
        let hac6_show = self.t.names.hac06_show;
        let mut hac6_off_show_list = false;
        let mut invalid_poa_on_claim = false;
        let mut met: Vec<(u8, usize)> = Vec::new();
        for at in 0..self.sdx.len() {
            for h in 0..self.sdx[at].hacs.len() {
                let dx = &self.sdx[at];
                let hac = &dx.hacs[h];
                let new_status = if matches!(dx.poa, b'Y' | b'W') {
                    HacStatus::NotMet
                } else if dx.excluded {
                    HacStatus::Excluded
                } else {
                    if dx.poa_invalid() {
                        invalid_poa_on_claim = true;
                    }
                    let holds = self
                        .t
                        .hacs
                        .iter()
                        .filter(|(number, _, _)| *number == hac.number)
                        .flat_map(|(_, _, formulas)| formulas)
                        .any(|f: &Expr| f.eval(&self.mask, 0, Severity::None));
                    if holds {
                        if hac.number == 6 && !dx.has(hac6_show) {
                            hac6_off_show_list = true;
                        }
                        met.push((hac.number, at));
                        HacStatus::Met
                    } else {
                        HacStatus::NotMet
                    }
                };
                self.sdx[at].hacs[h].status = new_status;
            }
        }
        if !hac6_off_show_list {
            for dx in &mut self.sdx {
                for hac in dx.hacs.iter_mut().filter(|h| h.name == hac6_show) {
                    hac.status = HacStatus::NotMet;
                }
            }
        }
        match status {
            HospitalStatus::NotExempt => {
                let mut ungroupable = false;
                for &(number, at) in &met {
                    if number == 6 && !hac6_off_show_list {
                        continue;
                    }
                    if self.sdx[at].poa_invalid() || (number != 6 && invalid_poa_on_claim) {
                        ungroupable = true;
                    }
                }
                if ungroupable {
                    ReturnCode::HacMissingOnePoa
                } else {
                    ReturnCode::Ok
                }
            }
            _ => {
                let not_y_w = self
                    .sdx
                    .iter()
                    .filter(|d| !matches!(d.poa, b'Y' | b'W'))
                    .count();
                for dx in &self.sdx {
                    if !dx.hac_met() {
                        continue;
                    }
                    if not_y_w >= 2 {
                        return ReturnCode::HacStatusInvalidMultHacsPoaNotYW;
                    }
                    if matches!(dx.poa, b'N' | b'U') {
                        return ReturnCode::HacStatusInvalidPoaNOrU;
                    }
                    if dx.poa_invalid() {
                        return ReturnCode::HacStatusInvalidPoaInvalidOr1;
                    }
                }
                ReturnCode::Ok
            }
        }
    }

    /// Marks the codes that made a pass's formula hold, as the CMS grouper does. The
    /// formula is the principal diagnosis's MDC's (else a reroute's, else the pre-MDC
    /// one). Each matched attribute, then the severity, marks one secondary diagnosis,
    /// the most significant first (MCC, then CC, then by code); the matched procedure
    /// attributes mark the first procedure that has them all, else per attribute its
    /// first procedure (or the procedures of a completed cluster that has it).
    /// Diagnoses are matched in the MDC of the result, procedures in the MDC of the
    /// formula (29 for unrelated procedures); attributes the formula scopes `ANY:` mark
    /// nothing.
    fn mark(&mut self, pass: &Pass<'t>, impact: Impact) {
        let Some(formula) = pass.marking else { return };
        let unmarked = |resolved: &mut Vec<Resolved>| {
            resolved.retain(|(atom, _)| {
                !matches!(atom, Some((Scope::Any, name)) if formula.any_scoped.contains(name))
            });
        };
        let mut resolved = self.matched(formula, pass.mdc, pass.severity);
        unmarked(&mut resolved);
        self.mark_diagnoses(&resolved, impact);
        let mdc = if UNRELATED_DRGS.contains(&formula.drg) {
            29
        } else if formula.reroute_mdc != 0 {
            formula.reroute_mdc
        } else {
            self.pdx_mdc.unwrap_or(0)
        };
        if mdc != pass.mdc {
            resolved = self.matched(formula, mdc, pass.severity);
            unmarked(&mut resolved);
        }
        self.mark_procedures(&resolved, mdc, impact);
    }

    /// The atoms and severity that made `formula` hold in `mdc`.
    fn matched(&self, formula: &Formula, mdc: u8, severity: Severity) -> Vec<Resolved> {
        let mut matched = Vec::new();
        formula
            .expr
            .matched(&self.mask, mdc, severity, &mut matched);
        // A diagnosis with a matched attribute marks for it before the severity, which
        // another diagnosis may then mark for.
        matched.sort_unstable_by_key(|m| match m {
            Matched::Atom(a) => (0, *a),
            Matched::Severity(s) => (1, *s as u32),
        });
        matched.dedup();
        let atoms = &self.t.atoms;
        let scope_name = |atom: u32| -> Option<(Scope, u32)> {
            atoms.by_name.iter().enumerate().find_map(|(name, slots)| {
                slots.iter().position(|s| *s == atom).map(|scope| {
                    let scope = match scope {
                        1 => Scope::Pdx,
                        2 => Scope::Sdx,
                        3 => Scope::Only,
                        _ => Scope::Any,
                    };
                    (scope, name as u32)
                })
            })
        };
        matched
            .iter()
            .map(|m| match m {
                Matched::Atom(a) => (scope_name(*a), None),
                Matched::Severity(s) => (None, Some(*s)),
            })
            .collect()
    }

    fn mark_diagnoses(&mut self, resolved: &[Resolved], impact: Impact) {
        let mut remaining: Vec<bool> = vec![true; resolved.len()];
        let mut order: Vec<usize> = (0..self.sdx.len()).collect();
        order.sort_by(|a, b| {
            let (a, b) = (&self.sdx[*a], &self.sdx[*b]);
            b.severity().cmp(&a.severity()).then(a.code.cmp(&b.code))
        });
        for at in order {
            let dx = &self.sdx[at];
            // A diagnosis the formula's suppression leaves out of the severity still
            // marks for it, as in the CMS grouper.
            let severity_counts = !dx.excluded && !dx.death_excluded;
            let hit = resolved
                .iter()
                .enumerate()
                .position(|(i, (atom, severity))| {
                    remaining[i]
                        && match (atom, severity) {
                            (_, Some(s)) => {
                                *s != Severity::None && severity_counts && dx.severity() == *s
                            }
                            (Some((Scope::Any, name)), None) => {
                                !self.pdx.has(*name) && dx.has_any(*name)
                            }
                            (Some((Scope::Sdx, name)), None) => dx.has_any(*name),
                            _ => false,
                        }
                });
            if let Some(i) = hit {
                remaining[i] = false;
                let dx = &mut self.sdx[at];
                dx.impact = dx.impact.add(impact);
            }
        }
    }

    fn mark_procedures(&mut self, resolved: &[Resolved], mdc: u8, impact: Impact) {
        let names: Vec<u32> = resolved
            .iter()
            .filter_map(|(atom, _)| match atom {
                Some((Scope::Any, name)) => Some(*name),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return;
        }
        let active = |p: &Pr<'_>| mdc >= 32 || p.suppressed & (1 << mdc) == 0;
        let has = |attributes: Option<&Procedure>, name: &u32| {
            attributes.is_some_and(|i| i.attributes.contains(name))
        };
        if let Some(p) = self
            .procedures
            .iter_mut()
            .find(|p| active(p) && names.iter().all(|n| has(p.info, n)))
        {
            p.impact = p.impact.add(impact);
            return;
        }
        let cluster_with = |clusters: &[(u16, Option<&Procedure>)],
                            want: &dyn Fn(Option<&Procedure>) -> bool| {
            clusters
                .iter()
                .find(|(_, info)| want(*info))
                .map(|(number, _)| *number)
        };
        if let Some(number) =
            cluster_with(&self.clusters, &|info| names.iter().all(|n| has(info, n)))
        {
            self.mark_cluster(number, impact);
            return;
        }
        for name in &names {
            if let Some(p) = self
                .procedures
                .iter_mut()
                .find(|p| active(p) && has(p.info, name))
            {
                p.impact = p.impact.add(impact);
            } else if let Some(number) = cluster_with(&self.clusters, &|info| has(info, name)) {
                self.mark_cluster(number, impact);
            }
        }
    }

    /// Marks every procedure of a completed cluster (each code once).
    fn mark_cluster(&mut self, number: u16, impact: Impact) {
        let mut seen: Vec<String> = Vec::new();
        for p in &mut self.procedures {
            if p.clusters.contains(&number) && !seen.contains(&p.code) {
                seen.push(p.code.clone());
                p.impact = p.impact.add(impact);
            }
        }
    }

    fn result(self, initial: &Pass<'t>, final_pass: &Pass<'t>) -> GroupResult {
        let t = self.t;
        let weight = t.weights.get(&final_pass.drg);
        let ok = final_pass.return_code == ReturnCode::Ok;
        let diagnosis = |dx: &Dx<'_>, mdc: Option<u8>, impact: Impact| DiagnosisResult {
            code: dx.code.clone(),
            mdc,
            severity: dx.severity(),
            drg_impact: impact,
            valid: dx.info.is_some(),
            excluded: dx.excluded || dx.death_excluded,
            hacs: dx
                .hacs
                .iter()
                .filter(|h| h.status == HacStatus::Met)
                .map(|h| h.number)
                .collect(),
        };
        GroupResult {
            id: self.claim.id.clone(),
            initial_mdc: initial.mdc,
            initial_drg: initial.drg,
            initial_severity: initial.severity,
            final_mdc: final_pass.mdc,
            final_drg: final_pass.drg,
            final_severity: final_pass.severity,
            return_code: final_pass.return_code,
            drg_title: t
                .drg_titles
                .get(&final_pass.drg)
                .cloned()
                .unwrap_or_default(),
            mdc_title: t
                .mdc_titles
                .get(&final_pass.mdc)
                .cloned()
                .unwrap_or_default(),
            weight: weight.map(|w| w.weight),
            gmlos: weight.map(|w| w.gmlos),
            amlos: weight.map(|w| w.amlos),
            pdx: diagnosis(
                &self.pdx,
                self.pdx_mdc,
                if ok { Impact::Both } else { Impact::None },
            ),
            sdx: self
                .sdx
                .iter()
                .map(|d| diagnosis(d, None, d.impact))
                .collect(),
            procedures: self
                .procedures
                .iter()
                .map(|p| ProcedureResult {
                    code: p.code.clone(),
                    is_or: p.info.is_some_and(|i| {
                        i.attributes.contains(&t.names.d468) || i.attributes.contains(&t.names.d477)
                    }),
                    drg_impact: p.impact,
                    valid: p.info.is_some(),
                })
                .collect(),
        }
    }
}
