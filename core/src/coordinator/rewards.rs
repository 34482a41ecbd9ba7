//! Epoch rewards in integer base units.
//!
//! Each epoch has a pool (the configured reward plus what the previous
//! epoch carried over, plus stake forfeited by slashed workers). The
//! operator takes its cut, eligible workers share the rest by weight, the
//! honest workers who exposed a liar share a bounty, and every rounding
//! remainder is carried into the next epoch. All amounts are `u128` base
//! units and the books always balance exactly:
//!
//! `Σ payouts + Σ bounties + operator_cut + carried_out == reward + carried_in + forfeited`
//!
//! Weight of a worker = its polo score × accuracy bonus × stake multiplier,
//! all integer factors (the reference used doubles and lost the remainder).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::ids::WorkerId;

/// Reward rules. Defaults are the seed's numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardConfig {
    /// New reward per epoch in base units (800 tokens of 10¹⁸ units).
    #[serde(with = "crate::amount")]
    pub epoch_reward: u128,
    /// Percent of the pool kept by the operator (10).
    pub operator_cut_pct: u8,
    /// Verified assignments a worker needs in an epoch to be paid (10).
    pub min_tasks: u64,
    /// Accuracy, in parts per million, that earns the bonus (99.5 % = 995 000).
    pub bonus_accuracy_ppm: u32,
    /// Weight multiplier of the bonus, in percent (120 = ×1.2).
    pub bonus_multiplier_pct: u32,
    /// Stake that earns the full stake multiplier; 0 disables it.
    #[serde(with = "crate::amount")]
    pub stake_for_max_bonus: u128,
    /// The largest stake bonus, in percent of weight (50 = up to ×1.5).
    pub max_stake_bonus_pct: u32,
    /// Percent of forfeited stake paid to the workers who exposed liars.
    pub bounty_pct: u8,
}

/// One token in base units (10¹⁸, like wei).
pub const TOKEN: u128 = 1_000_000_000_000_000_000;

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            epoch_reward: 800 * TOKEN,
            operator_cut_pct: 10,
            min_tasks: 10,
            bonus_accuracy_ppm: 995_000,
            bonus_multiplier_pct: 120,
            stake_for_max_bonus: 0,
            max_stake_bonus_pct: 50,
            bounty_pct: 50,
        }
    }
}

/// What a worker did in the current epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochWork {
    /// Sum of polo scores of its verified assignments.
    pub score: u64,
    /// Verified assignments (it agreed with the accepted result).
    pub agreed: u64,
    /// Assignments whose result was outvoted.
    pub outvoted: u64,
    /// Liars exposed by results it agreed on.
    pub exposed: u64,
    /// Stake it holds.
    pub stake: u128,
    /// Slashed this epoch: paid nothing.
    pub slashed: bool,
}

impl EpochWork {
    /// Accuracy in parts per million (0 without results).
    pub fn accuracy_ppm(&self) -> u32 {
        let total = self.agreed + self.outvoted;
        if total == 0 {
            return 0;
        }
        (u128::from(self.agreed) * 1_000_000 / u128::from(total)) as u32
    }
}

/// One worker's payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// Who.
    pub worker: WorkerId,
    /// Share of the worker pool, base units.
    pub amount: u128,
    /// Share of the bounty, base units.
    pub bounty: u128,
    /// The integer weight that decided `amount`.
    pub weight: u128,
    /// Verified assignments.
    pub tasks: u64,
    /// Accuracy, ppm.
    pub accuracy_ppm: u32,
    /// Whether the accuracy bonus applied.
    pub bonus: bool,
}

/// The closed books of one epoch: what a settler pays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSettlement {
    /// Epoch number (from 0).
    pub epoch: u64,
    /// New reward of this epoch.
    pub reward: u128,
    /// Carried in from the previous epoch.
    pub carried_in: u128,
    /// Stake forfeited by workers slashed this epoch.
    pub forfeited: u128,
    /// The operator's cut.
    pub operator_cut: u128,
    /// Payouts, by worker id.
    pub payouts: Vec<Payout>,
    /// Rounding remainders and unspent amounts for the next epoch.
    pub carried_out: u128,
    /// Digest of the payout list (and of `addresses`, when there are
    /// any): what settlement agrees on.
    pub digest: Digest,
    /// Where payees said their payouts go (identities that declared an
    /// address), in payout order. Stored beside the settlement
    /// ([`super::recovery::ns::EPOCH_ADDRESSES`]), so settlements written
    /// before addresses existed still decode.
    #[serde(skip)]
    pub addresses: Vec<PayoutAddress>,
    /// The stakes behind the payouts and the stakes forfeited by the
    /// epoch's slashed workers. Stored beside the settlement
    /// ([`super::recovery::ns::EPOCH_STAKES`]) and joined to its digest
    /// when not empty, as `addresses` are.
    #[serde(skip)]
    pub stakes: EpochStakes,
}

/// The stakes of an epoch's settlement, by worker id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStakes {
    /// Payees that held a stake when the epoch closed (it weighted their pay).
    pub held: Vec<(WorkerId, u128)>,
    /// Workers slashed in the epoch and the stake each forfeited (the
    /// settlement's `forfeited` is their sum).
    pub forfeits: Vec<(WorkerId, u128)>,
}

impl EpochStakes {
    /// Nothing staked, nothing forfeited.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.forfeits.is_empty()
    }

    /// The stake `worker` held, 0 for none.
    pub fn held_by(&self, worker: &WorkerId) -> u128 {
        self.held.iter().find(|(w, _)| w == worker).map_or(0, |(_, s)| *s)
    }
}

/// A payee's payout address, as declared when its epoch closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutAddress {
    /// The payee.
    pub worker: WorkerId,
    /// Where it said its payouts go.
    pub address: String,
}

impl EpochSettlement {
    /// Everything that came in.
    pub fn total_in(&self) -> u128 {
        self.reward + self.carried_in + self.forfeited
    }

    /// Everything that went out (payouts, bounties, cut, carry).
    pub fn total_out(&self) -> u128 {
        self.payouts.iter().map(|p| p.amount + p.bounty).sum::<u128>() + self.operator_cut + self.carried_out
    }
}

/// `⌊a × b / c⌋` for `b ≤ c < 2⁶⁴`, exact, without overflow:
/// `a = q·c + r`, so `a·b/c = q·b + r·b/c` and `r·b < 2¹²⁸`.
fn mul_div(a: u128, b: u128, c: u128) -> u128 {
    debug_assert!(b <= c && c < 1 << 64);
    if c == 0 {
        return 0;
    }
    let (q, r) = (a / c, a % c);
    q * b + r * b / c
}

/// Shifts all weights right by the same amount until their sum is below
/// 2⁶⁴ (keeps every ratio up to rounding, and `Σ ⌊pool·wᵢ/W⌋ ≤ pool`).
fn scale_below_2_64(weights: &mut [u128]) -> u128 {
    loop {
        let total: u128 = weights.iter().fold(0u128, |acc, w| acc.saturating_add(*w));
        if total < 1 << 64 {
            return total;
        }
        for w in weights.iter_mut() {
            *w >>= 1;
        }
    }
}

/// Closes an epoch: computes every payout, the cut and the carry.
pub fn settle_epoch(
    config: &RewardConfig,
    epoch: u64,
    carried_in: u128,
    forfeited: u128,
    work: &BTreeMap<WorkerId, EpochWork>,
) -> EpochSettlement {
    let reward = config.epoch_reward;
    let base = reward + carried_in;
    let operator_cut = base * u128::from(config.operator_cut_pct.min(100)) / 100;
    let worker_pool = base - operator_cut;
    let bounty_pool = forfeited * u128::from(config.bounty_pct.min(100)) / 100;
    let mut carried_out = forfeited - bounty_pool;

    let mut payouts: Vec<Payout> = Vec::new();
    let mut weights: Vec<u128> = Vec::new();
    for (id, w) in work {
        let accuracy_ppm = w.accuracy_ppm();
        let eligible = !w.slashed && w.agreed >= config.min_tasks;
        let bonus = eligible && w.agreed > 0 && accuracy_ppm >= config.bonus_accuracy_ppm;
        let weight = if eligible {
            let stake_bonus = if config.stake_for_max_bonus == 0 {
                0
            } else {
                let stake = w.stake.min(config.stake_for_max_bonus);
                // stake ≤ stake_for_max_bonus, so this is at most max_stake_bonus_pct.
                let mut pair = [stake, config.stake_for_max_bonus];
                scale_below_2_64(&mut pair);
                (u128::from(config.max_stake_bonus_pct) * pair[0]).checked_div(pair[1]).unwrap_or(0)
            };
            u128::from(w.score)
                * u128::from(if bonus { config.bonus_multiplier_pct } else { 100 })
                * (100 + stake_bonus)
        } else {
            0
        };
        weights.push(weight);
        payouts.push(Payout { worker: id.clone(), amount: 0, bounty: 0, weight, tasks: w.agreed, accuracy_ppm, bonus });
    }
    let total_weight = scale_below_2_64(&mut weights);
    let mut paid = 0u128;
    if total_weight > 0 {
        for (p, w) in payouts.iter_mut().zip(&weights) {
            p.amount = mul_div(worker_pool, *w, total_weight);
            paid += p.amount;
        }
    }
    carried_out += worker_pool - paid;

    let mut exposures: Vec<u128> = work.values().map(|w| if w.slashed { 0 } else { u128::from(w.exposed) }).collect();
    let total_exposed = scale_below_2_64(&mut exposures);
    let mut bounty_paid = 0u128;
    if total_exposed > 0 {
        for (p, e) in payouts.iter_mut().zip(&exposures) {
            p.bounty = mul_div(bounty_pool, *e, total_exposed);
            bounty_paid += p.bounty;
        }
    }
    carried_out += bounty_pool - bounty_paid;
    payouts.retain(|p| p.amount > 0 || p.bounty > 0);

    let digest = settlement_digest(epoch, operator_cut, &payouts);
    EpochSettlement {
        epoch,
        reward,
        carried_in,
        forfeited,
        operator_cut,
        payouts,
        carried_out,
        digest,
        addresses: Vec::new(),
        stakes: EpochStakes::default(),
    }
}

/// [`Digest`] of the canonical (postcard) encoding of the epoch number, the
/// operator cut and the payout list.
fn settlement_digest(epoch: u64, operator_cut: u128, payouts: &[Payout]) -> Digest {
    let bytes = super::recovery::encode(&(epoch, operator_cut, payouts));
    Digest::of(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> WorkerId {
        WorkerId::new(s).expect("valid")
    }

    fn work(score: u64, agreed: u64, outvoted: u64) -> EpochWork {
        EpochWork { score, agreed, outvoted, ..EpochWork::default() }
    }

    #[test]
    fn seed_basic_distribution() {
        // 100 tokens; three perfect workers with 100, 200, 100 tasks.
        let cfg = RewardConfig { epoch_reward: 100 * TOKEN, ..RewardConfig::default() };
        let mut w = BTreeMap::new();
        w.insert(id("ant-1"), work(100, 100, 0));
        w.insert(id("ant-2"), work(200, 200, 0));
        w.insert(id("ant-3"), work(100, 100, 0));
        let s = settle_epoch(&cfg, 0, 0, 0, &w);
        assert_eq!(s.operator_cut, 10 * TOKEN);
        let amounts: Vec<u128> = s.payouts.iter().map(|p| p.amount).collect();
        assert_eq!(amounts, vec![22_500_000_000_000_000_000, 45 * TOKEN, 22_500_000_000_000_000_000]);
        assert!(s.payouts.iter().all(|p| p.bonus));
        assert_eq!(s.carried_out, 0);
        assert_eq!(s.total_in(), s.total_out());
    }

    #[test]
    fn seed_bonus_and_min_tasks() {
        let cfg = RewardConfig {
            epoch_reward: 100 * TOKEN,
            bonus_accuracy_ppm: 990_000,
            bonus_multiplier_pct: 150,
            ..RewardConfig::default()
        };
        let mut w = BTreeMap::new();
        w.insert(id("perfect"), work(100, 100, 0));
        w.insert(id("sloppy"), work(90, 90, 10));
        w.insert(id("lazy"), work(5, 5, 0));
        let s = settle_epoch(&cfg, 3, 0, 0, &w);
        // Weights 150·100 vs 100·90 → 15 000 : 9 000 of 90 tokens.
        assert_eq!(s.payouts.len(), 2, "lazy is below min_tasks");
        assert_eq!(s.payouts[0].amount, 56_250_000_000_000_000_000);
        assert_eq!(s.payouts[1].amount, 33_750_000_000_000_000_000);
        assert_eq!(s.total_in(), s.total_out());
    }

    #[test]
    fn remainders_carry_and_books_balance() {
        let cfg = RewardConfig { epoch_reward: 1_000_000_007, min_tasks: 1, ..RewardConfig::default() };
        let mut w = BTreeMap::new();
        for (i, score) in [3u64, 7, 11].iter().enumerate() {
            w.insert(id(&format!("w{i}")), work(*score, 1, 0));
        }
        let s = settle_epoch(&cfg, 0, 13, 0, &w);
        assert!(s.carried_out > 0);
        assert_eq!(s.total_in(), s.total_out());
        let next = settle_epoch(&cfg, 1, s.carried_out, 0, &w);
        assert_eq!(next.carried_in, s.carried_out);
        assert_eq!(next.total_in(), next.total_out());
    }

    #[test]
    fn slashed_workers_get_nothing_and_exposers_share_the_bounty() {
        let cfg = RewardConfig {
            epoch_reward: 1000,
            min_tasks: 1,
            operator_cut_pct: 0,
            bounty_pct: 50,
            ..RewardConfig::default()
        };
        let mut w = BTreeMap::new();
        w.insert(id("liar"), EpochWork { score: 50, agreed: 5, slashed: true, ..EpochWork::default() });
        w.insert(id("honest"), EpochWork { score: 10, agreed: 10, exposed: 1, ..EpochWork::default() });
        let s = settle_epoch(&cfg, 0, 0, 400, &w);
        assert_eq!(s.payouts.len(), 1);
        assert_eq!(s.payouts[0].amount, 1000);
        assert_eq!(s.payouts[0].bounty, 200);
        assert_eq!(s.carried_out, 200);
        assert_eq!(s.total_in(), s.total_out());
    }

    #[test]
    fn no_eligible_worker_carries_the_whole_pool() {
        let cfg = RewardConfig::default();
        let s = settle_epoch(&cfg, 0, 0, 0, &BTreeMap::new());
        assert_eq!(s.operator_cut + s.carried_out, cfg.epoch_reward);
        assert!(s.payouts.is_empty());
    }

    #[test]
    fn mul_div_is_exact_for_large_values() {
        assert_eq!(mul_div(u128::MAX, 3, 3), u128::MAX);
        assert_eq!(mul_div(10u128.pow(30), 7, 11), 10u128.pow(30) * 7 / 11);
        let mut w = [u128::MAX / 2, u128::MAX / 2, 5];
        assert!(scale_below_2_64(&mut w) < 1 << 64);
    }
}
