//! Every relative link of README.md and docs/*.md points to a file that exists and, with an
//! anchor, to a heading of that file, so that moving a section cannot leave a dead link.

use lock_tests::walkthrough::links::broken_links;
use lock_tests::walkthrough::parse::documentation_files;

#[test]
fn the_documentation_links_point_to_existing_files_and_headings() {
    let files = documentation_files();
    assert!(
        files.len() > 5,
        "README.md and the pages of docs/: {files:?}"
    );
    let broken: Vec<String> = files.iter().flat_map(|file| broken_links(file)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
