//! Output devices: a sound card through `cpal` (cargo feature `device`), or the headless `null` device, a
//! thread that calls the same callback at real-time pace.

use super::{Feed, Shared};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Which device to play on. The sound devices exist only in a build with the `device` feature (cpal);
/// without it, only the headless [`Null`](DeviceChoice::Null) device does, and [`Default`] is it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The system's default output.
    #[cfg(feature = "device")]
    Default,
    /// A device by the name or id [`list_devices`] reports.
    #[cfg(feature = "device")]
    Named(String),
    /// No sound card: a thread that asks for a buffer every buffer's duration, measured against absolute
    /// deadlines so it keeps real-time pace on average.
    Null,
}

impl Default for DeviceChoice {
    /// The system's default output, or the null device in a build without the `device` feature.
    fn default() -> Self {
        #[cfg(feature = "device")]
        return DeviceChoice::Default;
        #[cfg(not(feature = "device"))]
        DeviceChoice::Null
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    /// `null`, `default`, or a device's name or id.
    ///
    /// # Errors
    /// [`Error::NoDevice`] for anything but `null` in a build without the `device` feature.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "null" => Ok(DeviceChoice::Null),
            #[cfg(feature = "device")]
            "default" => Ok(DeviceChoice::Default),
            #[cfg(feature = "device")]
            other => Ok(DeviceChoice::Named(other.to_owned())),
            #[cfg(not(feature = "device"))]
            other => Err(Error::NoDevice(format!(
                "no device \"{other}\": fxgraph was built without its `device` feature, so only the null device plays"
            ))),
        }
    }
}

/// One output device, as [`list_devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// What `--device` accepts.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Whether it is the system's default output.
    pub is_default: bool,
}

/// A running output. Dropping it stops the callbacks.
#[allow(dead_code, reason = "held for what dropping it does: stopping the callbacks")]
pub(crate) enum Output {
    Null(NullOutput),
    #[cfg(feature = "device")]
    Cpal(cpal::Stream),
}

/// The output devices: `null` first, then the sound devices `cpal` finds (with the `device` feature).
///
/// # Errors
/// If the sound system cannot be asked.
pub fn list_devices() -> Result<Vec<DeviceInfo>> {
    #[allow(unused_mut)]
    let mut list = vec![DeviceInfo {
        id: "null".into(),
        name: "headless, real-time paced (no sound card)".into(),
        is_default: false,
    }];
    #[cfg(feature = "device")]
    {
        use cpal::traits::{DeviceTrait, HostTrait};
        let host = cpal::default_host();
        let default = host.default_output_device().and_then(|d| d.id().ok()).map(|i| i.to_string());
        let devices = host.output_devices().map_err(|e| Error::Device(format!("cannot list devices: {e}")))?;
        for d in devices {
            let id = d.id().map(|i| i.to_string()).unwrap_or_else(|_| d.to_string());
            list.push(DeviceInfo { is_default: default.as_deref() == Some(id.as_str()), name: d.to_string(), id });
        }
    }
    Ok(list)
}

/// Starts calling `feed` from the chosen device. Returns the output and the device's name.
pub(crate) fn open(
    choice: &DeviceChoice,
    sample_rate: u32,
    channels: usize,
    buffer_frames: usize,
    feed: Feed,
    shared: &Arc<Shared>,
) -> Result<(Output, String)> {
    match choice {
        DeviceChoice::Null => {
            Ok((Output::Null(NullOutput::start(feed, sample_rate, channels, buffer_frames, shared)?), "null".into()))
        }
        #[cfg(feature = "device")]
        other => open_cpal(other, sample_rate, channels, buffer_frames, feed, shared),
    }
}

/// The headless device: a thread that fills a buffer every `buffer_frames / sample_rate` seconds.
///
/// It behaves as a sound card with a buffer of [`NullOutput::PERIODS`] callbacks: a late wake-up is caught up
/// with callbacks back to back while that buffer would still be playing, and a thread stalled longer (the
/// whole process stopped, a virtual machine's CPU taken away) is what a card reports as an xrun: counted in
/// [`PlayStatus::device_xruns`](super::PlayStatus::device_xruns), the lost time not asked for again (asking
/// for it at once would drain the player's ring for a stall that was not the renderer's).
pub(crate) struct NullOutput {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NullOutput {
    /// The callbacks the modelled card's buffer holds.
    const PERIODS: u32 = 2;

    fn start(
        mut feed: Feed,
        sample_rate: u32,
        channels: usize,
        buffer_frames: usize,
        shared: &Arc<Shared>,
    ) -> Result<Self> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let shared = shared.clone();
        let period = Duration::from_secs_f64(buffer_frames as f64 / f64::from(sample_rate));
        let thread = std::thread::Builder::new()
            .name("fxgraph-null-device".into())
            .spawn(move || {
                let mut buffer = vec![0.0f32; buffer_frames * channels];
                let mut start = Instant::now();
                let mut calls: u32 = 0;
                while !flag.load(Ordering::Acquire) {
                    // Absolute deadlines: a late wake-up is caught up, as a card's buffer allows.
                    let due = start + period * calls;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else if now - due > period * Self::PERIODS {
                        shared.device_xruns.fetch_add(1, Ordering::Relaxed);
                        start = now;
                        calls = 0;
                    }
                    feed.fill(&mut buffer);
                    calls = calls.wrapping_add(1);
                }
            })
            .map_err(|e| Error::Device(format!("cannot start the null device's thread: {e}")))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for NullOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The device `choice` names (or the default one).
#[cfg(feature = "device")]
fn find_device(choice: &DeviceChoice) -> Result<cpal::Device> {
    use cpal::traits::{DeviceTrait, HostTrait};
    let host = cpal::default_host();
    Ok(match choice {
        DeviceChoice::Named(name) => host
            .output_devices()
            .map_err(|e| Error::NoDevice(format!("cannot list audio devices: {e}")))?
            .find(|d| d.to_string() == *name || d.id().is_ok_and(|i| i.to_string() == *name))
            .ok_or_else(|| {
                Error::NoDevice(format!(
                    "no output device is named \"{}\" (`fxgraph play --list-devices` lists them)",
                    name.escape_debug()
                ))
            })?,
        _ => host.default_output_device().ok_or_else(|| {
            Error::NoDevice(
                "there is no audio output device; play headlessly with `--device null`, or list devices with \
                 `--list-devices`"
                    .into(),
            )
        })?,
    })
}

/// The sample rate the device `choice` prefers (its default configuration's), for a graph without one of
/// its own; `None` for the null device, which plays any rate.
///
/// # Errors
/// [`Error::NoDevice`] if the device does not exist or cannot say.
pub fn preferred_rate(choice: &DeviceChoice) -> Result<Option<u32>> {
    match choice {
        DeviceChoice::Null => Ok(None),
        #[cfg(feature = "device")]
        other => {
            use cpal::traits::DeviceTrait;
            let device = find_device(other)?;
            let config = device
                .default_output_config()
                .map_err(|e| Error::NoDevice(format!("{device}: cannot read its default format: {e}")))?;
            Ok(Some(config.sample_rate()))
        }
    }
}

#[cfg(feature = "device")]
fn open_cpal(
    choice: &DeviceChoice,
    sample_rate: u32,
    channels: usize,
    buffer_frames: usize,
    mut feed: Feed,
    shared: &Arc<Shared>,
) -> Result<(Output, String)> {
    use cpal::traits::{DeviceTrait, StreamTrait};
    use cpal::{BufferSize, FromSample, SampleFormat, StreamConfig};

    let device = find_device(choice)?;
    let name = device.to_string();
    let ranges: Vec<cpal::SupportedStreamConfigRange> = device
        .supported_output_configs()
        .map_err(|e| Error::NoDevice(format!("{name}: cannot read what it supports: {e}")))?
        .collect();
    let fits = |r: &&cpal::SupportedStreamConfigRange| {
        usize::from(r.channels()) == channels && (r.min_sample_rate()..=r.max_sample_rate()).contains(&sample_rate)
    };
    let preference = [SampleFormat::F32, SampleFormat::I32, SampleFormat::I16, SampleFormat::F64, SampleFormat::U16];
    let format = preference
        .iter()
        .find(|f| ranges.iter().filter(fits).any(|r| r.sample_format() == **f))
        .copied()
        .ok_or_else(|| {
            let supported: Vec<String> = ranges
                .iter()
                .map(|r| {
                    format!("{} ch {}-{} Hz {}", r.channels(), r.min_sample_rate(), r.max_sample_rate(), r.sample_format())
                })
                .collect();
            Error::NoDevice(format!(
                "{name} cannot play {sample_rate} Hz with {channels} channels in a format fxgraph writes (it supports: {})",
                supported.join("; ")
            ))
        })?;

    let errors = shared.clone();
    let on_error = move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun {
            errors.device_xruns.fetch_add(1, Ordering::Relaxed);
        } else if let Ok(mut slot) = errors.device_error.lock() {
            slot.get_or_insert_with(|| e.to_string());
        }
    };
    // Integer devices get the samples converted from a scratch buffer filled in slices (allocated here,
    // once, never in the callback).
    let scratch_len = channels * 8192;
    fn converted<T: cpal::SizedSample + FromSample<f32>>(
        mut feed: Feed,
        scratch_len: usize,
    ) -> impl FnMut(&mut [T], &cpal::OutputCallbackInfo) + Send + 'static {
        let mut scratch = vec![0.0f32; scratch_len];
        move |data: &mut [T], _| {
            for chunk in data.chunks_mut(scratch.len()) {
                let s = &mut scratch[..chunk.len()];
                feed.fill(s);
                for (o, v) in chunk.iter_mut().zip(s.iter()) {
                    *o = T::from_sample_(*v);
                }
            }
        }
    }
    // The requested buffer size where the device says it can take it, else the device's default.
    let fixed = ranges.iter().filter(fits).filter(|r| r.sample_format() == format).any(|r| match r.buffer_size() {
        cpal::SupportedBufferSize::Range { min, max } => (*min..=*max).contains(&(buffer_frames as u32)),
        cpal::SupportedBufferSize::Unknown => false,
    });
    let buffer_size = if fixed { BufferSize::Fixed(buffer_frames as u32) } else { BufferSize::Default };
    let config = StreamConfig { channels: channels as u16, sample_rate, buffer_size };
    let stream = match format {
        SampleFormat::F32 => {
            device.build_output_stream::<f32, _, _>(config, move |d: &mut [f32], _| feed.fill(d), on_error, None)
        }
        SampleFormat::I32 => {
            device.build_output_stream::<i32, _, _>(config, converted(feed, scratch_len), on_error, None)
        }
        SampleFormat::I16 => {
            device.build_output_stream::<i16, _, _>(config, converted(feed, scratch_len), on_error, None)
        }
        SampleFormat::F64 => {
            device.build_output_stream::<f64, _, _>(config, converted(feed, scratch_len), on_error, None)
        }
        _ => device.build_output_stream::<u16, _, _>(config, converted(feed, scratch_len), on_error, None),
    }
    .map_err(|e| Error::NoDevice(format!("{name}: cannot open an output stream: {e}")))?;
    stream.play().map_err(|e| Error::Device(format!("{name}: cannot start: {e}")))?;
    Ok((Output::Cpal(stream), name))
}
