"""The public API from the package itself, imported on first use."""

import subprocess
import sys

import g2l


def test_public_names_come_from_their_modules():
    from g2l import Config, EncodedVideo, G2LError, Grounder, Moment, QueryResult, load_config
    from g2l.config import Config as config_class, load_config as config_loader
    from g2l.errors import G2LError as error_class
    from g2l.inference import EncodedVideo as video_class, Grounder as grounder_class, Moment as moment_class
    from g2l.inference import QueryResult as result_class

    assert (Grounder, EncodedVideo, QueryResult, Moment) == (grounder_class, video_class, result_class, moment_class)
    assert (load_config, Config, G2LError) == (config_loader, config_class, error_class)
    assert set(g2l.__all__) <= set(dir(g2l))


def test_importing_the_package_imports_no_torch():
    code = "import sys, g2l; assert 'torch' not in sys.modules and 'g2l.inference' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_grounder_module_imports_no_transformers_or_decord():
    """Importing transformers' model stack is ~2 s of a cold start; it is paid only when a text
    encoder is built, and decord only when a video is opened (issue 12, item 5)."""
    code = ("import sys, g2l.inference, g2l.cli; "
            "loaded = [m for m in ('transformers', 'decord') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
