//! Committee rotation in the core: which role this node has at the index being decided
//! (sole issuer, member of a committee of several, or none), the update its operator
//! approved, and applying the rotations milestones carry (see `dag_core::committee`).

use dag_core::committee::{CommitteeSchedule, CommitteeUpdate, Rotation};
use dag_core::{Milestone, MilestoneIndex, TxId};

use super::{committee, Protocol};

impl Protocol {
    /// The committees by index range as this node knows them (the genesis committee and
    /// every rotation applied, with their evidence).
    pub fn committee_schedule(&self) -> CommitteeSchedule {
        self.validator.params().schedule()
    }

    /// The committee update this node's operator approved, if any (see
    /// [`Protocol::approve_committee_update`]).
    pub fn approved_committee_update(&self) -> Option<&CommitteeUpdate> {
        self.approved_update.as_ref()
    }

    /// The operator of a committee member approves a committee update: as proposer (or
    /// sole issuer) this node puts it in its next milestone, and as a member it signs a
    /// proposal carrying an update only if it is this one. An update becomes effective
    /// only with the signatures of the committee in office (k of them), so every member
    /// operator must approve the same update. `None` withdraws it. Refused: an update that
    /// is unusable or takes effect at or before the next index, or while another one is
    /// pending.
    pub fn approve_committee_update(
        &mut self,
        update: Option<CommitteeUpdate>,
    ) -> Result<(), String> {
        let Some(u) = update else {
            self.approved_update = None;
            return Ok(());
        };
        let next = self.ledger.confirmed_index() + 1;
        self.validator
            .params()
            .may_carry(next, &u)
            .map_err(|e| e.to_string())?;
        self.approved_update = Some(u);
        Ok(())
    }

    /// The update a milestone of `index` proposed or issued by this node carries: the
    /// approved one, if it may still be carried at `index`.
    pub(super) fn update_to_carry(&self, index: MilestoneIndex) -> Option<CommitteeUpdate> {
        let u = self.approved_update.as_ref()?;
        self.validator
            .params()
            .may_carry(index, u)
            .ok()
            .map(|_| u.clone())
    }

    /// Why a member does not sign a proposal for `m`'s update (`None`: acceptable): an
    /// update must be the one this node's operator approved and obey the rotation rules.
    pub(super) fn update_refusal(&self, m: &Milestone) -> Option<String> {
        let u = m.committee_update.as_ref()?;
        if self.approved_update.as_ref() != Some(u) {
            return Some(
                "it carries a committee update this member's operator did not approve".into(),
            );
        }
        self.validator
            .params()
            .may_carry(m.index, u)
            .err()
            .map(|e| e.to_string())
    }

    /// Before a received milestone is applied: its signatures against the committee in
    /// office at its index (stage 1 may have checked them before this node knew a rotation
    /// that changed it), and its update against the rotation rules. `None`: it may apply.
    pub(super) fn rotation_refusal(&self, m: &Milestone, parents: &[TxId; 2]) -> Option<String> {
        let params = self.validator.params();
        if params.has_rotations() {
            if let Err(why) = params.verify_milestone_signatures(parents, m) {
                return Some(format!(
                    "its signatures are not those of the committee in office: {why}"
                ));
            }
        }
        let u = m.committee_update.as_ref()?;
        params
            .may_carry(m.index, u)
            .err()
            .map(|e| format!("its committee update breaks the rotation rules: {e}"))
    }

    /// After milestone `m` (on `parents`) was applied: installs its rotation, if it carries
    /// one, returning it for the store; and the committee of the next index becomes certain.
    pub(super) fn after_milestone_applied(
        &mut self,
        m: &Milestone,
        parents: [TxId; 2],
    ) -> Result<Option<Rotation>, String> {
        let params = self.validator.params();
        let rotation = match m.committee_update.as_ref() {
            None => None,
            Some(u) => {
                let r = Rotation {
                    parents,
                    milestone: m.clone(),
                };
                params
                    .add_rotation(&r)
                    .map_err(|e| format!("milestone {}: rotation refused: {e}", m.index))?;
                tracing::info!(
                    index = m.index,
                    effective_from = u.effective_from,
                    members = u.committee.len(),
                    threshold = u.threshold,
                    "committee rotation applied"
                );
                if self.approved_update.as_ref() == Some(u) {
                    self.approved_update = None;
                }
                self.ledger.add_rotation(r.clone());
                Some(r)
            }
        };
        params.set_applied(m.index);
        self.refresh_role();
        Ok(rotation)
    }

    /// Sets this node's role for the index being decided from the committee in office
    /// there: sole issuer (a committee of one), member of a committee of several (its
    /// committee state, carried over from the previous term: the durable vote, counters,
    /// evidence), or neither.
    pub(super) fn refresh_role(&mut self) {
        let Some((_, key)) = self.config.milestone_signer.clone() else {
            return;
        };
        let next = self.ledger.confirmed_index().saturating_add(1);
        let params = self.validator.params();
        params.set_applied(self.ledger.confirmed_index());
        let (members, threshold) = params.committee_at(next);
        let me = members
            .iter()
            .position(|a| *a == key.address())
            .map(|i| i as u8);
        self.sole_signer = None;
        match me {
            Some(i) if members.len() == 1 => {
                self.sole_signer = Some(i);
                self.committee = None;
            }
            Some(i) => {
                let same = self
                    .committee
                    .as_ref()
                    .is_some_and(|c| c.serves(i, &members, threshold));
                if !same {
                    let previous = self.committee.take();
                    self.committee = Some(committee::Committee::for_term(
                        previous,
                        i,
                        key,
                        members,
                        threshold,
                        self.config.proposer_timeout(),
                    ));
                }
            }
            None => {
                self.committee = None;
            }
        }
    }
}
