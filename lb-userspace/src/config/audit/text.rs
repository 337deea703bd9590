//! XLB000 and XLB024 on the free-text fields: lengths within their limits, no control
//! characters.

use super::*;

impl Audit<'_> {
    /// Every free-text field outside the VIPs within its length limit (names are limited where
    /// they parse; a health check's path is checked with the check).
    pub(super) fn lengths(&mut self, file: &ConfigFile) {
        let global = file.global.get_ref();
        let mut fields = vec![(
            "global.interface".to_owned(),
            &global.interface,
            MAX_INTERFACE_LEN,
        )];
        fields.extend(
            global
                .pin_path
                .iter()
                .map(|p| ("global.pin_path".to_owned(), p, MAX_PATH_LEN)),
        );
        if let Some(bgp) = &file.bgp {
            let bgp = bgp.get_ref();
            fields.push(("bgp.routes_file".to_owned(), &bgp.routes_file, MAX_PATH_LEN));
            fields.extend(
                bgp.socket
                    .iter()
                    .map(|s| ("bgp.socket".to_owned(), s, MAX_SOCKET_PATH_LEN)),
            );
            fields.extend(
                bgp.reload_command
                    .iter()
                    .map(|c| ("bgp.reload_command".to_owned(), c, MAX_COMMAND_LEN)),
            );
        }
        if let Some(alerts) = &file.alerts {
            let command = alerts.get_ref().command.iter();
            fields.extend(command.map(|c| ("alerts.command".to_owned(), c, MAX_COMMAND_LEN)));
        }
        for (field, value, max) in fields {
            self.length(&field, value, max);
        }
    }

    /// `value` of `field` at most `max` bytes long.
    pub(super) fn length(&mut self, field: &str, value: &Spanned<String>, max: usize) {
        let len = value.get_ref().len();
        if len > max {
            self.report(
                &SYNTAX,
                value.span(),
                field.to_owned(),
                format!("{field} is {len} bytes long, more than the {max} it may be"),
                format!("shorten {field} to at most {max} bytes"),
            );
        }
    }

    /// XLB024: a control character in any value that reaches a file (the BIRD include file,
    /// the BGP record, the pin path) or a command line, a request or a log: a line feed there
    /// would start a line the config author never wrote. (A health check's path is checked with
    /// the check.)
    pub(super) fn control_characters(&mut self, file: &ConfigFile) {
        let global = file.global.get_ref();
        let mut values = vec![("global.interface".to_owned(), Some(&global.interface))];
        values.push(("global.pin_path".to_owned(), global.pin_path.as_ref()));
        if let Some(alerts) = &file.alerts {
            values.push((
                "alerts.command".to_owned(),
                alerts.get_ref().command.as_ref(),
            ));
        }
        if let Some(bgp) = &file.bgp {
            let bgp = bgp.get_ref();
            values.push(("bgp.routes_file".to_owned(), Some(&bgp.routes_file)));
            values.push(("bgp.socket".to_owned(), bgp.socket.as_ref()));
            values.push(("bgp.reload_command".to_owned(), bgp.reload_command.as_ref()));
        }
        for (field, value) in values {
            if let Some(value) = value {
                self.printable(&field, value);
            }
        }
    }

    /// `value` of `field` without a control character (XLB024).
    pub(super) fn printable(&mut self, field: &str, value: &Spanned<String>) {
        let text = value.get_ref();
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            self.report(
                &CONTROL_CHARACTER,
                value.span(),
                field.to_owned(),
                format!("{field} = {text:?} holds the control character {c:?}"),
                format!(
                    "remove the control character: write {field} on one line of printable \
                     characters (a multi-line command belongs in a script the setting runs)"
                ),
            );
        }
    }
}
