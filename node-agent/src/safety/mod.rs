//! The agent's own safety: what it gives up once started (`privileges`) and the known-good
//! image baseline it holds brainboxes to (`baseline`), and safe mode (`safemode`).

pub mod baseline;
pub mod privileges;
pub mod safemode;
