//! [`Catalogue`]: the markets of one config and how to find them: every
//! [`MarketKey`] by its [`MarketId`], the lookups by key and by on-chain id,
//! the market a submission names, and the EIP-712 domain everything is
//! signed under. It is fixed for an engine's life (a config that changes any
//! of it needs a restart: [`Catalogue::admits`]), so the runtime builds it
//! once and shares it without a lock (`Arc<Catalogue>`) between the market
//! actors' router, the tables and quoting; each registry (rebuilt by every
//! recovery) holds an equal one of its own.

use std::collections::HashMap;

use alloy_primitives::B256;
use alloy_primitives::map::B256Map;
use alloy_sol_types::Eip712Domain;

use crate::eip712::SegmentSubmission;
use crate::market::MarketId;
use crate::market_key::{ConfidenceBand, MarketKey, SegmentType, Window};
use crate::params::EngineConfig;
use crate::registry::ReconfigureError;
use crate::segment::SubmitError;

/// The fixed markets of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    keys: Vec<MarketKey>,
    by_key: HashMap<MarketKey, MarketId>,
    by_chain_id: B256Map<MarketId>,
    types: Vec<SegmentType>,
    windows: Vec<Window>,
    bands: Vec<ConfidenceBand>,
    chain_id: u64,
    marketplace: alloy_primitives::Address,
    domain: Eip712Domain,
}

impl Catalogue {
    /// The catalogue of `cfg`: types x windows x bands, in that order.
    pub fn new(cfg: &EngineConfig) -> Self {
        let keys = cfg.market_keys();
        let id = |i: usize| MarketId(i as u32);
        Self {
            by_key: keys.iter().enumerate().map(|(i, k)| (k.clone(), id(i))).collect(),
            by_chain_id: keys.iter().enumerate().map(|(i, k)| (k.id(), id(i))).collect(),
            keys,
            types: cfg.types.iter().map(|t| t.segment_type.clone()).collect(),
            windows: cfg.windows.clone(),
            bands: cfg.bands.clone(),
            chain_id: cfg.chain_id,
            marketplace: cfg.marketplace,
            domain: cfg.domain(),
        }
    }

    /// Every market's key, by [`MarketId`].
    pub fn keys(&self) -> &[MarketKey] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key(&self, id: MarketId) -> &MarketKey {
        &self.keys[id.index()]
    }

    pub fn by_key(&self, key: &MarketKey) -> Option<MarketId> {
        self.by_key.get(key).copied()
    }

    /// The market whose on-chain id (keccak256 of its key text) is `id`.
    pub fn by_chain_id(&self, id: &B256) -> Option<MarketId> {
        self.by_chain_id.get(id).copied()
    }

    /// The domain orders and submissions are signed under.
    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    /// The market a submission names (type, window, and the band its
    /// confidence falls in), or why it names none.
    pub fn key_of(&self, s: &SegmentSubmission) -> Result<MarketKey, SubmitError> {
        let absent = |text: &str| format!("'{text}' is not in the catalogue");
        let segment_type: SegmentType =
            s.segmentType.parse().map_err(|e| SubmitError::UnknownSegmentType(format!("{e}")))?;
        if !self.types.contains(&segment_type) {
            return Err(SubmitError::UnknownSegmentType(absent(&s.segmentType)));
        }
        let window: Window = s.window.parse().map_err(|e| SubmitError::UnknownWindow(format!("{e}")))?;
        if !self.windows.contains(&window) {
            return Err(SubmitError::UnknownWindow(absent(&s.window)));
        }
        let band = self
            .bands
            .iter()
            .copied()
            .find(|b| b.contains(s.confidenceBps))
            .ok_or(SubmitError::ConfidenceOutsideBands(s.confidenceBps))?;
        Ok(MarketKey::new(segment_type, window, band))
    }

    /// Whether `cfg` keeps this catalogue and signing domain, as a live
    /// reload must.
    pub fn admits(&self, cfg: &EngineConfig) -> Result<(), ReconfigureError> {
        if cfg.market_keys() != self.keys {
            return Err(ReconfigureError::CatalogueChanged);
        }
        if (cfg.chain_id, cfg.marketplace) != (self.chain_id, self.marketplace) {
            return Err(ReconfigureError::DomainChanged);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn markets_are_found_by_key_by_chain_id_and_by_what_a_submission_names() {
        let cfg = testing::config();
        let catalogue = Catalogue::new(&cfg);
        assert_eq!(catalogue.len(), 27);
        let key: MarketKey = "RESEARCH_INTENT|7D|0.70-0.85".parse().unwrap();
        let id = catalogue.by_key(&key).unwrap();
        assert_eq!((catalogue.key(id), catalogue.by_chain_id(&key.id())), (&key, Some(id)));
        let mut s =
            testing::signed_segment(&testing::PROVIDER_KEY, "RESEARCH_INTENT", "7D", 8000, 0, 0, 1, b"x").submission;
        assert_eq!(catalogue.key_of(&s), Ok(key));
        s.confidenceBps = 4_000;
        assert_eq!(catalogue.key_of(&s), Err(SubmitError::ConfidenceOutsideBands(4_000)));
        s.window = "2D".into();
        assert_eq!(catalogue.key_of(&s), Err(SubmitError::UnknownWindow("'2D' is not in the catalogue".into())));
        // A signed window is its canonical text: 168H is 7D, and refused as such.
        s.window = "168H".into();
        let refused = catalogue.key_of(&s).unwrap_err();
        assert_eq!(refused.to_string(), "unknown window: '168H' is not canonical: write '7D'");
        s.segmentType = "JOB_SEARCH".into();
        let absent = "'JOB_SEARCH' is not in the catalogue";
        assert_eq!(catalogue.key_of(&s), Err(SubmitError::UnknownSegmentType(absent.into())));
        let mut fewer = cfg.clone();
        fewer.bands.pop();
        assert_eq!(catalogue.admits(&fewer), Err(ReconfigureError::CatalogueChanged));
        let mut moved = cfg.clone();
        moved.chain_id = 1;
        assert_eq!(catalogue.admits(&moved), Err(ReconfigureError::DomainChanged));
        assert_eq!(catalogue.admits(&cfg), Ok(()));
    }
}
