//! `[bgp]`: a routes file, socket and reload command BIRD can use (XLB016).

use super::*;

impl Audit<'_> {
    /// XLB016: `[bgp]` settings the daemon could not use to announce or withdraw. The
    /// settings, the default reload command applied.
    pub(super) fn bgp(&mut self, spanned: &Spanned<BgpFile>) -> Bgp {
        let bgp = spanned.get_ref();
        let path_problem = |text: &str| {
            if text.is_empty() {
                Some("is empty")
            } else if !text.starts_with('/') {
                Some("is not an absolute path")
            } else if text.ends_with('/') {
                Some("names a directory, not a file")
            } else if text
                .chars()
                .any(|c| c == '"' || (c.is_whitespace() && !c.is_control()))
            {
                Some("holds a quote or a blank")
            } else {
                None
            }
        };
        self.text(
            &BAD_BGP,
            &bgp.routes_file,
            "bgp.routes_file",
            path_problem(bgp.routes_file.get_ref()),
            "write the absolute path of the file the daemon writes and bird.conf includes, e.g. \
             routes_file = \"/run/xlb/bird-vips.conf\"",
        );
        if let Some(socket) = &bgp.socket {
            self.text(
                &BAD_BGP,
                socket,
                "bgp.socket",
                path_problem(socket.get_ref()),
                format!(
                    "write the absolute path of BIRD's control socket (bird -s), e.g. socket = \
                     \"{}\", or remove socket for that default",
                    model::DEFAULT_BIRD_SOCKET
                ),
            );
        }
        if let Some(command) = &bgp.reload_command {
            let problem = if command.get_ref().trim().is_empty() {
                Some("is empty: BIRD would never reload the routes")
            } else if bgp.socket.is_some() {
                Some("is given with socket: only one of them can say how BIRD reloads")
            } else {
                None
            };
            self.text(
                &BAD_BGP,
                command,
                "bgp.reload_command",
                problem,
                "write the shell command that makes BIRD re-read its config, e.g. \
                 reload_command = \"birdc -s /run/bird/bird.ctl configure\", or remove it (and \
                 keep socket) for that default",
            );
        }
        Bgp {
            routes_file: bgp.routes_file.get_ref().into(),
            reload: match (&bgp.reload_command, &bgp.socket) {
                (Some(command), _) => Reload::Shell {
                    command: command.get_ref().clone(),
                },
                (None, socket) => Reload::Birdc {
                    socket: socket
                        .as_ref()
                        .map_or(DEFAULT_BIRD_SOCKET, |s| s.get_ref().as_str())
                        .into(),
                },
            },
        }
    }
}
