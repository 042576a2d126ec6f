pub mod detect;
pub mod fat;
