//! An image's status and the transitions Glance allows, as a pure table:
//! `queued` (record made, no data) → `saving` (data arriving) → `active`;
//! `active` ⇄ `deactivated`; `killed` when the data is lost or does not
//! match its checksum. Deleting removes the record (Glance's `deleted` is
//! never listed).

use serde::Serialize;

use super::CatalogError;

/// Glance's image statuses that a catalog record can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    Deactivated,
}

impl ImageStatus {
    pub const ALL: [ImageStatus; 5] = [
        ImageStatus::Queued,
        ImageStatus::Saving,
        ImageStatus::Active,
        ImageStatus::Killed,
        ImageStatus::Deactivated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Killed => "killed",
            ImageStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(text: &str) -> Result<ImageStatus, String> {
        ImageStatus::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                format!("unknown status {text:?}: expected queued, saving, active, killed or deactivated")
            })
    }

    /// Whether an add is (or was, if its process died) still writing it.
    pub fn is_being_added(self) -> bool {
        matches!(self, ImageStatus::Queued | ImageStatus::Saving)
    }
}

/// What is asked of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deactivate,
    Reactivate,
    Delete,
    Export,
    SetProperties,
}

/// The status after `action` (unchanged for a no-op), or the refusal with
/// the rule it breaks.
pub fn transition(
    id: &str,
    status: ImageStatus,
    protected: bool,
    action: Action,
) -> Result<ImageStatus, CatalogError> {
    use ImageStatus as S;
    let refuse = |code, message: String| Err(CatalogError::refused(code, message));
    if status.is_being_added() && action != Action::Delete {
        return refuse(
            "BEING_ADDED",
            format!("image {id} is {}: an add is writing it (or was killed: run `vhdkit catalog verify --fix`)", status.name()),
        );
    }
    match (action, status) {
        (Action::Deactivate, S::Active | S::Deactivated) => Ok(S::Deactivated),
        (Action::Deactivate, s) => refuse(
            "STATUS",
            format!("image {id} is {}: only an active image can be deactivated", s.name()),
        ),
        (Action::Reactivate, S::Active | S::Deactivated) => Ok(S::Active),
        (Action::Reactivate, s) => refuse(
            "STATUS",
            format!("image {id} is {}: only a deactivated image can be reactivated", s.name()),
        ),
        (Action::Delete, _) if protected => refuse(
            "PROTECTED",
            format!("image {id} is protected and cannot be deleted; first: vhdkit catalog set {id} --property protected=false"),
        ),
        (Action::Delete, s) if s.is_being_added() => refuse(
            "BEING_ADDED",
            format!("image {id} is {}: an add is writing it (if that add was killed, `vhdkit catalog verify --fix` removes it)", s.name()),
        ),
        (Action::Delete, s) => Ok(s),
        (Action::Export, S::Active) => Ok(S::Active),
        (Action::Export, S::Deactivated) => refuse(
            "DEACTIVATED",
            format!("image {id} is deactivated: its data cannot be downloaded or exported (reactivate it first)"),
        ),
        (Action::Export, s) => refuse(
            "STATUS",
            format!("image {id} is {}: only an active image can be exported", s.name()),
        ),
        (Action::SetProperties, s) => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ImageStatus as S;

    fn code(r: Result<ImageStatus, CatalogError>) -> &'static str {
        match r {
            Err(CatalogError::Refused { code, .. }) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.name()).unwrap(), s);
        }
        assert!(S::parse("deleted").is_err());
    }

    #[test]
    fn deactivate_and_reactivate() {
        let t = |s, a| transition("i", s, false, a);
        assert_eq!(t(S::Active, Action::Deactivate).unwrap(), S::Deactivated);
        assert_eq!(
            t(S::Deactivated, Action::Deactivate).unwrap(),
            S::Deactivated
        );
        assert_eq!(t(S::Deactivated, Action::Reactivate).unwrap(), S::Active);
        assert_eq!(t(S::Active, Action::Reactivate).unwrap(), S::Active);
        assert_eq!(code(t(S::Killed, Action::Deactivate)), "STATUS");
        assert_eq!(code(t(S::Killed, Action::Reactivate)), "STATUS");
        assert_eq!(code(t(S::Saving, Action::Deactivate)), "BEING_ADDED");
    }

    #[test]
    fn delete_and_export() {
        assert_eq!(
            code(transition("i", S::Active, true, Action::Delete)),
            "PROTECTED"
        );
        assert_eq!(
            code(transition("i", S::Saving, false, Action::Delete)),
            "BEING_ADDED"
        );
        assert!(transition("i", S::Killed, false, Action::Delete).is_ok());
        assert_eq!(
            code(transition("i", S::Deactivated, false, Action::Export)),
            "DEACTIVATED"
        );
        assert_eq!(
            code(transition("i", S::Killed, false, Action::Export)),
            "STATUS"
        );
        assert!(transition("i", S::Active, false, Action::Export).is_ok());
        assert_eq!(
            code(transition("i", S::Queued, false, Action::SetProperties)),
            "BEING_ADDED"
        );
    }
}
