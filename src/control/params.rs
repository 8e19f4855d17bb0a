//! Parameters by name: a node's list, reading one, and setting one (now or at a frame), on the one path
//! a change takes (see [`Engine::set`]).

use super::*;
use crate::error::{Error, Result};
use crate::node::{BuildContext, NodeSpec, ParamInfo, ParamValue};

impl Engine {
    /// The automatable parameters of node `name`, in index order.
    ///
    /// # Errors
    /// [`Error::NoSuchNode`].
    pub fn params(&mut self, name: &str) -> Result<Vec<ParamInfo>> {
        let e = self.node(name).ok_or_else(|| Error::NoSuchNode(name.into()))?;
        let config = self.config().clone();
        let spec = self.spec(e).ok_or_else(|| Error::NoSuchNode(name.into()))?;
        Ok(spec.params(&BuildContext { format: config.format, base_dir: &config.base_dir }))
    }

    /// The current value of a parameter.
    ///
    /// # Errors
    /// [`Error::NoSuchNode`] or [`Error::NoSuchParam`].
    pub fn get(&mut self, node: &str, param: &str) -> Result<ParamValue> {
        let (e, index, info) = self.find_param(node, param)?;
        let value = self.spec(e).map_or(0.0, |s| s.param(index));
        Ok(match &info.choices {
            Some(c) => ParamValue::Text(c.get(value as usize).cloned().unwrap_or_default()),
            None => ParamValue::Number(value),
        })
    }

    pub(super) fn find_param(&mut self, node: &str, param: &str) -> Result<(Entity, usize, ParamInfo)> {
        let params = self.params(node)?;
        let e = self.node(node).ok_or_else(|| Error::NoSuchNode(node.into()))?;
        match params.iter().position(|p| p.name == param) {
            Some(i) => Ok((e, i, params[i].clone())),
            None => Err(Error::NoSuchParam {
                node: node.into(),
                param: param.into(),
                known: params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Checks a new value and returns the edited description, and whether the change rebuilds the node.
    #[allow(clippy::type_complexity)]
    fn edited(
        &mut self,
        node: &str,
        param: &str,
        value: ParamValue,
    ) -> Result<(Entity, usize, f64, Box<dyn NodeSpec>, bool)> {
        let (e, index, info) = self.find_param(node, param)?;
        let bad = |message: String| Error::BadValue { node: node.into(), param: param.into(), message };
        let v = info.resolve(&value).map_err(|e| bad(e.message))?;
        let config = self.config().clone();
        let mut spec = self.spec(e).ok_or_else(|| Error::NoSuchNode(node.into()))?.clone_spec();
        spec.set_param(index, v);
        spec.validate(&BuildContext { format: config.format, base_dir: &config.base_dir })
            .map_err(|err| bad(err.message))?;
        Ok((e, index, v, spec, info.smoothing == crate::node::Smoothing::Rebuild))
    }

    /// Sets a parameter by name (`"threshold_db"`, `"bands[1].gain_db"`, a plugin's manifest key) on the
    /// node's component, and sends it to the audio side at once (smoothed as the parameter's
    /// [`Smoothing`](crate::node::Smoothing) says). A parameter whose change rebuilds the node (a limiter's
    /// lookahead) is rebuilt and cross-faded at the next [`update`](Self::update).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`], [`Error::NoSuchParam`], or [`Error::BadValue`] for a value
    /// of the wrong type or out of range; nothing changes then.
    pub fn set(&mut self, node: &str, param: &str, value: impl Into<ParamValue>) -> Result<()> {
        self.set_value(node, param, value.into(), None)
    }

    /// Sets a parameter to take effect at frame `frame` of the audio side's clock
    /// ([`AudioProcessor::frame`], also [`MetricsReader::frames`]), sample-accurately; at once if that frame
    /// has passed. Sent immediately, without waiting for [`update`](Self::update).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn set_at(&mut self, node: &str, param: &str, value: impl Into<ParamValue>, frame: u64) -> Result<()> {
        self.set_value(node, param, value.into(), Some(frame))
    }

    /// The one path of a parameter change by name: found (its index), checked once, written to the node's
    /// component and its baseline (so the diff system has nothing left to do), and sent by index.
    fn set_value(&mut self, node: &str, param: &str, value: ParamValue, at: Option<u64>) -> Result<()> {
        let (e, index, v, spec, rebuilds) = self.edited(node, param, value)?;
        let kind = self.world.get::<SpecAccess>(e).map(|a| a.0);
        if !rebuilds && let Some(mut b) = self.world.get_mut::<Baseline>(e) {
            if let Some(slot) = b.values.get_mut(index) {
                *slot = v;
            }
            b.spec = spec.clone_spec();
        }
        if let Some(kind) = kind {
            (kind.set)(&mut self.world, e, spec);
        }
        if !rebuilds {
            let audio = self.world.get::<AudioNode>(e).map(|a| a.id);
            systems::send_param(&mut self.world, e, audio, index, v, at);
        }
        Ok(())
    }

    /// Splits `node.param` at the node whose name is the longest prefix followed by `.` (node names may
    /// hold dots).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`] if no node's name is such a prefix.
    pub fn split_key<'k>(&mut self, key: &'k str) -> Result<(&'k str, &'k str)> {
        let names = self.node_names();
        names
            .iter()
            .filter(|n| key.len() > n.len() + 1 && key.starts_with(n.as_str()) && key.as_bytes()[n.len()] == b'.')
            .max_by_key(|n| n.len())
            .map(|n| (&key[..n.len()], &key[n.len() + 1..]))
            .ok_or_else(|| Error::NoSuchNode(key.split('.').next().unwrap_or(key).to_owned()))
    }
}
