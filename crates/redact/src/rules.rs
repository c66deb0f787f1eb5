//! The built-in rule table.
//!
//! Each rule is gated: it runs only when one of its keywords occurs in the line (one Aho-Corasick
//! pass over the line finds all keywords of all rules at once), or, for personal data that has no
//! keyword, when the line's byte statistics say it could match (a long run of digits, an `@`).
//! The `sample` of each rule is a template used by the synthetic corpus and by the unit test that
//! proves every rule finds what it is meant to find; `«…»` marks the secret part of the sample.

use crate::Class;

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// When one of the rule's keywords (ASCII case-insensitive) occurs in the text.
    Keywords,
    /// When the text holds digits in a shape this kind of personal data has.
    Digits(Shape),
    /// When the text holds an `@`.
    At,
}

/// Digit shapes found by the byte pass (cheap: evaluated only where a group of digits ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `ddd<sep>dddd` at the end of a digit run (NANP), or `+` before a digit (E.164).
    Phone = 0,
    /// `ddd-dd-dddd`.
    Ssn = 1,
    /// 13+ digits joined by single spaces or dashes.
    Card = 2,
    /// 10+ digits joined by single spaces (what follows an IBAN's letters).
    Iban = 3,
}

/// What a candidate must pass beyond its regex.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Nothing more.
    None,
    /// Shannon entropy of the secret, bits per byte, at least this.
    Entropy(f32),
    /// `key = value` where the key is not a harmless neighbour (`password_length`), and the value
    /// is not a placeholder, with at least this entropy (0 for passwords).
    Assignment(f32),
    /// A payment card: 13–19 digits, a known issuer prefix, Luhn checksum.
    Luhn,
    /// An IBAN: the country's length and the ISO 7064 mod-97 checksum.
    Iban,
    /// A US SSN: area not 000/666/9xx, group not 00, serial not 0000.
    Ssn,
    /// A phone number: 8–15 digits, not glued to a word, a version or an address.
    Phone,
    /// An email address whose "top-level domain" is not a file extension.
    Email,
}

/// How specific a rule is; on overlapping findings the more specific kind names the redaction.
pub type Priority = u8;
/// A token with a registered prefix (`ghp_`, `AKIA`): certain.
pub const P_PREFIX: Priority = 3;
/// A value identified by its context (`aws … secret = …`).
pub const P_CONTEXT: Priority = 2;
/// Generic assignments (`password=`, `token:`).
pub const P_GENERIC: Priority = 1;

/// The regex of a rule.
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    /// A complete regex; the secret is capture group `group` (0 = whole match).
    Raw(&'static str, usize),
    /// `<names>` followed by an assignment and a value matching `<value>`; the secret is the value.
    Ctx(&'static str, &'static str),
}

/// One built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Unique id (used by profiles to disable a rule).
    pub id: &'static str,
    /// The kind written into `[REDACTED:<kind>:…]`.
    pub kind: &'static str,
    /// Secret or personal data.
    pub class: Class,
    /// When it runs.
    pub gate: Gate,
    /// Keywords for [`Gate::Keywords`].
    pub keywords: &'static [&'static str],
    /// The regex.
    pub pattern: Pattern,
    /// Validation beyond the regex.
    pub check: Check,
    /// On overlaps the higher priority names the finding.
    pub priority: Priority,
    /// A template of a true positive (see the module comment).
    pub sample: &'static str,
}

/// Build the regex source of a [`Pattern`]; the secret's capture group index is returned too.
pub fn pattern_source(p: &Pattern) -> (String, usize) {
    match p {
        Pattern::Raw(s, g) => ((*s).to_string(), *g),
        Pattern::Ctx(names, value) => (
            format!(
                r#"(?i)(?:{names})[\w.-]{{0,32}}?["']?\s{{0,3}}(?:=|:=|=>|:|\s)\s{{0,3}}["'`]?({value})(?:[\s"'`;,&)\]}}]|\\[nrt]|$)"#
            ),
            1,
        ),
    }
}

const S: Class = Class::SECRET;
const P: Class = Class::PII;

macro_rules! prefix {
    ($id:literal, $kind:literal, [$($kw:literal),+], $re:literal, $sample:literal) => {
        Spec {
            id: $id,
            kind: $kind,
            class: S,
            gate: Gate::Keywords,
            keywords: &[$($kw),+],
            pattern: Pattern::Raw($re, 0),
            check: Check::None,
            priority: P_PREFIX,
            sample: $sample,
        }
    };
}

macro_rules! ctx {
    ($id:literal, $kind:literal, [$($kw:literal),+], $names:literal, $value:literal, $ent:literal, $sample:literal) => {
        Spec {
            id: $id,
            kind: $kind,
            class: S,
            gate: Gate::Keywords,
            keywords: &[$($kw),+],
            pattern: Pattern::Ctx($names, $value),
            check: Check::Entropy($ent),
            priority: P_CONTEXT,
            sample: $sample,
        }
    };
}

/// The built-in rules.
pub static BUILTIN: &[Spec] = &[
    // ---- cloud providers ----
    prefix!("aws-access-key-id", "aws-access-key-id", ["akia", "asia", "abia", "acca", "a3t"],
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b", "«AKIA{B16}»"),
    ctx!("aws-secret-access-key", "aws-secret-access-key", ["aws"],
        r"aws[\w.-]{0,20}?(?:secret|private|signing)[\w.-]{0,20}?(?:key)?", r"[A-Za-z0-9/+=]{40}", 3.5,
        "aws_secret_access_key = «{b40}»"),
    ctx!("aws-session-token", "aws-session-token", ["aws_session_token", "x-amz-security-token", "awssessiontoken"],
        r"aws_session_token|x-amz-security-token|awssessiontoken", r"[A-Za-z0-9/+=]{100,}", 4.0,
        "AWS_SESSION_TOKEN=«FwoGZXIvYXdzE{b120}»"),
    prefix!("aws-mws-key", "aws-mws-key", ["amzn.mws."],
        r"amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "«amzn.mws.{UUID}»"),
    prefix!("gcp-api-key", "gcp-api-key", ["aiza"], r"\bAIza[0-9A-Za-z_-]{35}", "«AIza{u35}»"),
    prefix!("gcp-oauth-client-secret", "gcp-oauth-client-secret", ["gocspx-"], r"GOCSPX-[A-Za-z0-9_-]{28}", "«GOCSPX-{u28}»"),
    prefix!("gcp-oauth-access-token", "gcp-oauth-token", ["ya29."], r"\bya29\.[0-9A-Za-z_-]{30,}", "«ya29.{u80}»"),
    prefix!("gcp-oauth-refresh-token", "gcp-oauth-token", ["1//0"], r"\b1//0[0-9A-Za-z_-]{40,}", "«1//0{u60}»"),
    ctx!("gcp-service-account-key-id", "gcp-service-account-key", ["private_key_id"],
        r"private_key_id", r"[a-f0-9]{40}", 3.0, "\"private_key_id\": \"«{h40}»\""),
    ctx!("azure-storage-account-key", "azure-storage-key", ["accountkey"],
        r"accountkey", r"[A-Za-z0-9+/]{86}==", 4.0,
        "DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey=«{b86}==»;EndpointSuffix=core.windows.net"),
    prefix!("azure-sas-signature", "azure-sas-token", ["sig="],
        r"(?i)[?&;]sig=[A-Za-z0-9%+/]{40,}(?:%3D|=){0,2}", "https://prod.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-12-01«&sig={b43}%3D»"),
    prefix!("azure-ad-client-secret", "azure-ad-client-secret", ["q~"],
        r"\b[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}", "«{a3}8Q~{u34}»"),
    prefix!("digitalocean-pat", "digitalocean-token", ["dop_v1_"], r"\bdop_v1_[a-f0-9]{64}", "«dop_v1_{h64}»"),
    prefix!("digitalocean-oauth", "digitalocean-token", ["doo_v1_"], r"\bdoo_v1_[a-f0-9]{64}", "«doo_v1_{h64}»"),
    prefix!("digitalocean-refresh", "digitalocean-token", ["dor_v1_"], r"\bdor_v1_[a-f0-9]{64}", "«dor_v1_{h64}»"),
    prefix!("alibaba-access-key-id", "alibaba-access-key", ["ltai"], r"\bLTAI[A-Za-z0-9]{20}\b", "«LTAI{a20}»"),
    ctx!("alibaba-secret-key", "alibaba-secret-key", ["alibaba", "aliyun"],
        r"alibaba|aliyun", r"[A-Za-z0-9]{30}", 3.5, "ALIBABA_CLOUD_ACCESS_KEY_SECRET=«{a30}»"),
    prefix!("heroku-api-key-v2", "heroku-api-key", ["hrku-"], r"\bHRKU-AA[0-9a-zA-Z_-]{58}", "«HRKU-AA{u58}»"),
    ctx!("heroku-api-key", "heroku-api-key", ["heroku"],
        r"heroku", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", 3.0, "HEROKU_API_KEY=«{UUID}»"),
    ctx!("cloudflare-api-token", "cloudflare-token", ["cloudflare", "cf_api_token"],
        r"cloudflare|cf_api_token", r"[A-Za-z0-9_-]{40}", 3.5, "CLOUDFLARE_API_TOKEN=«{u40}»"),
    prefix!("cloudflare-origin-ca-key", "cloudflare-token", ["v1.0-"], r"\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}", "«v1.0-{h24}-{h146}»"),
    ctx!("fastly-api-token", "fastly-token", ["fastly"], r"fastly", r"[A-Za-z0-9_-]{32}", 3.5, "FASTLY_API_TOKEN: «{u32}»"),
    prefix!("vault-service-token", "vault-token", ["hvs."], r"\bhvs\.[A-Za-z0-9_-]{90,120}", "«hvs.{u95}»"),
    prefix!("vault-batch-token", "vault-token", ["hvb."], r"\bhvb\.[A-Za-z0-9_-]{138,300}", "«hvb.{u140}»"),
    prefix!("terraform-cloud-token", "terraform-token", ["atlasv1"], r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}", "«{a14}.atlasv1.{u67}»"),
    prefix!("pulumi-token", "pulumi-token", ["pul-"], r"\bpul-[a-f0-9]{40}\b", "«pul-{h40}»"),
    prefix!("doppler-token", "doppler-token", ["dp.pt.", "dp.st.", "dp.sa.", "dp.ct."], r"\bdp\.(?:pt|st|sa|ct)\.[A-Za-z0-9]{40,44}", "«dp.pt.{a43}»"),
    prefix!("scaleway-secret-key", "scaleway-key", ["scw"], r"\bSCW[A-Z0-9]{17}\b", "«SCW{A17}»"),
    prefix!("yandex-api-key", "yandex-key", ["aqvn"], r"\bAQVN[A-Za-z0-9_-]{35,38}", "«AQVN{u36}»"),
    prefix!("tailscale-key", "tailscale-key", ["tskey-"], r"\btskey-(?:auth|api|client|webhook|scim)-[A-Za-z0-9]{10,}-[A-Za-z0-9]{20,}", "«tskey-auth-{a12}-{a30}»"),
    prefix!("databricks-token", "databricks-token", ["dapi"], r"\bdapi[a-f0-9]{32}(?:-\d)?\b", "«dapi{h32}»"),
    prefix!("planetscale-token", "planetscale-token", ["pscale_"], r"\bpscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}", "«pscale_tkn_{u43}»"),
    prefix!("supabase-token", "supabase-token", ["sbp_"], r"\bsbp_[a-f0-9]{40}\b", "«sbp_{h40}»"),
    prefix!("flyio-token", "flyio-token", ["fo1_", "fm2_"], r"\b(?:fo1_[A-Za-z0-9_-]{43}|fm2_[A-Za-z0-9+/=_-]{100,})", "«fo1_{u43}»"),
    prefix!("dynatrace-token", "dynatrace-token", ["dt0c01."], r"\bdt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}", "«dt0c01.{A24}.{A64}»"),
    prefix!("age-secret-key", "age-secret-key", ["age-secret-key-1"], r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", "«AGE-SECRET-KEY-1{Z58}»"),
    // ---- AI providers ----
    prefix!("openai-api-key", "openai-api-key", ["t3blbkfj"], r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}", "«sk-proj-{u40}T3BlbkFJ{u40}»"),
    prefix!("openai-project-key", "openai-api-key", ["sk-proj-", "sk-svcacct-", "sk-admin-"], r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}", "«sk-proj-{u120}»"),
    prefix!("anthropic-api-key", "anthropic-api-key", ["sk-ant-"], r"\bsk-ant-(?:api03|admin01|oat01)-[A-Za-z0-9_-]{80,120}", "«sk-ant-api03-{u93}AA»"),
    prefix!("huggingface-token", "huggingface-token", ["hf_"], r"\bhf_[A-Za-z]{34}\b", "«hf_{L34}»"),
    prefix!("replicate-token", "replicate-token", ["r8_"], r"\br8_[A-Za-z0-9]{37}\b", "«r8_{a37}»"),
    prefix!("groq-api-key", "groq-api-key", ["gsk_"], r"\bgsk_[A-Za-z0-9]{52}\b", "«gsk_{a52}»"),
    prefix!("perplexity-api-key", "perplexity-api-key", ["pplx-"], r"\bpplx-[A-Za-z0-9]{48}\b", "«pplx-{a48}»"),
    // ---- source hosting, registries, CI ----
    prefix!("github-pat", "github-token", ["ghp_"], r"\bghp_[A-Za-z0-9]{36}\b", "«ghp_{a36}»"),
    prefix!("github-oauth", "github-token", ["gho_"], r"\bgho_[A-Za-z0-9]{36}\b", "«gho_{a36}»"),
    prefix!("github-user-to-server", "github-token", ["ghu_"], r"\bghu_[A-Za-z0-9]{36}\b", "«ghu_{a36}»"),
    prefix!("github-server-to-server", "github-token", ["ghs_"], r"\bghs_[A-Za-z0-9]{36}\b", "«ghs_{a36}»"),
    prefix!("github-refresh", "github-token", ["ghr_"], r"\bghr_[A-Za-z0-9]{36,76}\b", "«ghr_{a76}»"),
    prefix!("github-fine-grained-pat", "github-token", ["github_pat_"], r"\bgithub_pat_[A-Za-z0-9_]{82}\b", "«github_pat_{a22}_{a59}»"),
    prefix!("gitlab-pat", "gitlab-token", ["glpat-"], r"\bglpat-[A-Za-z0-9_-]{20,}", "«glpat-{u20}»"),
    prefix!("gitlab-pipeline-trigger", "gitlab-token", ["glptt-"], r"\bglptt-[a-f0-9]{40}\b", "«glptt-{h40}»"),
    prefix!("gitlab-runner-registration", "gitlab-token", ["gr1348941"], r"\bGR1348941[A-Za-z0-9_-]{20}", "«GR1348941{u20}»"),
    prefix!("gitlab-runner-auth", "gitlab-token", ["glrt-"], r"\bglrt-[A-Za-z0-9_-]{20,}", "«glrt-{u20}»"),
    prefix!("gitlab-deploy-token", "gitlab-token", ["gldt-"], r"\bgldt-[A-Za-z0-9_-]{20,}", "«gldt-{u20}»"),
    prefix!("gitlab-ci-job-token", "gitlab-token", ["glcbt-"], r"\bglcbt-[0-9a-zA-Z]{1,5}_[0-9a-zA-Z_-]{20}", "«glcbt-{a2}_{u20}»"),
    prefix!("gitlab-feed-token", "gitlab-token", ["glft-"], r"\bglft-[A-Za-z0-9_-]{20}", "«glft-{u20}»"),
    prefix!("gitlab-incoming-mail-token", "gitlab-token", ["glimt-"], r"\bglimt-[A-Za-z0-9_-]{25}", "«glimt-{u25}»"),
    prefix!("gitlab-oauth-secret", "gitlab-token", ["gloas-"], r"\bgloas-[A-Za-z0-9_-]{64}", "«gloas-{u64}»"),
    prefix!("gitlab-scim-token", "gitlab-token", ["glsoat-"], r"\bglsoat-[A-Za-z0-9_-]{20}", "«glsoat-{u20}»"),
    prefix!("bitbucket-app-password", "bitbucket-token", ["atbb"], r"\bATBB[A-Za-z0-9_=.-]{32}", "«ATBB{a32}»"),
    ctx!("bitbucket-client-secret", "bitbucket-token", ["bitbucket"], r"bitbucket", r"[A-Za-z0-9=_-]{64}", 3.5, "BITBUCKET_CLIENT_SECRET=«{u64}»"),
    prefix!("atlassian-api-token", "atlassian-token", ["atatt3"], r"\bATATT3[A-Za-z0-9_=-]{186}", "«ATATT3{u186}»"),
    prefix!("npm-token", "npm-token", ["npm_"], r"\bnpm_[A-Za-z0-9]{36}\b", "«npm_{a36}»"),
    prefix!("npm-legacy-auth", "npm-token", ["_authtoken"], r"(?i)_authToken\s*=\s*[^\s'\x22]{16,}", "//registry.npmjs.org/:«_authToken={UUID}»"),
    prefix!("pypi-token", "pypi-token", ["pypi-ageichlwas5vcmc"], r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", "«pypi-AgEIcHlwaS5vcmc{u70}»"),
    prefix!("rubygems-token", "rubygems-token", ["rubygems_"], r"\brubygems_[a-f0-9]{48}\b", "«rubygems_{h48}»"),
    prefix!("clojars-token", "clojars-token", ["clojars_"], r"(?i)\bCLOJARS_[a-z0-9]{60}\b", "«CLOJARS_{l60}»"),
    prefix!("nuget-api-key", "nuget-api-key", ["oy2"], r"\boy2[a-z0-9]{43}\b", "«oy2{l43}»"),
    prefix!("dockerhub-pat", "dockerhub-token", ["dckr_pat_", "dckr_oat_"], r"\bdckr_(?:pat|oat)_[A-Za-z0-9_-]{27,}", "«dckr_pat_{u27}»"),
    prefix!("circleci-pat", "circleci-token", ["ccipat_"], r"\bCCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}", "«CCIPAT_{a22}_{h40}»"),
    ctx!("circleci-token", "circleci-token", ["circle"], r"circle", r"[a-f0-9]{40}", 3.0, "CIRCLE_TOKEN=«{h40}»"),
    prefix!("buildkite-token", "buildkite-token", ["bkua_"], r"\bbkua_[a-f0-9]{40}\b", "«bkua_{h40}»"),
    prefix!("sonarqube-token", "sonarqube-token", ["sqp_", "squ_", "sqa_"], r"\bsq[pua]_[a-f0-9]{40}\b", "«sqp_{h40}»"),
    prefix!("jfrog-api-key", "jfrog-token", ["akcp"], r"\bAKCp[A-Za-z0-9]{69}\b", "«AKCp{a69}»"),
    prefix!("jfrog-identity-token", "jfrog-token", ["cmvmdgtuojaxoj"], r"\bcmVmdGtuOjAxOj[A-Za-z0-9]{50,}", "«cmVmdGtuOjAxOj{a50}»"),
    prefix!("harness-pat", "harness-token", ["pat."], r"\bpat\.[A-Za-z0-9_-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}\b", "«pat.{u22}.{h24}.{a20}»"),
    prefix!("octopus-deploy-key", "octopus-deploy-key", ["api-"], r"\bAPI-[A-Z0-9]{26}\b", "«API-{A26}»"),
    prefix!("infracost-key", "infracost-key", ["ico-"], r"\bico-[a-zA-Z0-9]{32}\b", "«ico-{a32}»"),
    prefix!("prefect-key", "prefect-key", ["pnu_"], r"\bpnu_[a-zA-Z0-9]{36}\b", "«pnu_{a36}»"),
    prefix!("linear-api-key", "linear-api-key", ["lin_api_"], r"\blin_api_[A-Za-z0-9]{40}\b", "«lin_api_{a40}»"),
    prefix!("sentry-org-token", "sentry-token", ["sntrys_"], r"\bsntrys_eyJ[A-Za-z0-9+/=_-]{60,}", "«sntrys_eyJ{u80}»"),
    prefix!("sentry-user-token", "sentry-token", ["sntryu_"], r"\bsntryu_[a-f0-9]{64}\b", "«sntryu_{h64}»"),
    prefix!("grafana-cloud-token", "grafana-token", ["glc_"], r"\bglc_[A-Za-z0-9+/]{32,400}={0,2}", "«glc_{b80}»"),
    prefix!("grafana-service-account", "grafana-token", ["glsa_"], r"\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b", "«glsa_{a32}_{h8}»"),
    prefix!("newrelic-user-key", "newrelic-key", ["nrak-"], r"\bNRAK-[A-Z0-9]{27}\b", "«NRAK-{A27}»"),
    prefix!("newrelic-insert-key", "newrelic-key", ["nrii-"], r"\bNRII-[A-Za-z0-9_-]{32}", "«NRII-{u32}»"),
    ctx!("datadog-api-key", "datadog-key", ["datadog", "dd_api_key", "dd-api-key", "dd_app_key", "dd-application-key"],
        r"datadog|dd_api_key|dd-api-key|dd_app_key|dd-application-key", r"[a-f0-9]{32}(?:[a-f0-9]{8})?", 3.0, "DD_API_KEY=«{h32}»"),
    prefix!("postman-api-key", "postman-key", ["pmak-"], r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b", "«PMAK-{h24}-{h34}»"),
    ctx!("snyk-token", "snyk-token", ["snyk"], r"snyk", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", 3.0, "SNYK_TOKEN=«{UUID}»"),
    ctx!("okta-token", "okta-token", ["okta"], r"okta", r"00[A-Za-z0-9_-]{40}", 3.5, "OKTA_API_TOKEN=«00{u40}»"),
    prefix!("readme-key", "readme-key", ["rdme_"], r"\brdme_[a-z0-9]{70}\b", "«rdme_{l70}»"),
    prefix!("typeform-token", "typeform-token", ["tfp_"], r"\btfp_[a-zA-Z0-9_.=-]{59}", "«tfp_{u59}»"),
    prefix!("contentful-token", "contentful-token", ["cfpat-"], r"\bCFPAT-[a-zA-Z0-9_-]{43}", "«CFPAT-{u43}»"),
    prefix!("notion-token", "notion-token", ["secret_", "ntn_"], r"\b(?:secret_[A-Za-z0-9]{43}|ntn_[0-9]{11}[A-Za-z0-9]{35})\b", "«ntn_{d11}{a35}»"),
    prefix!("adobe-client-secret", "adobe-client-secret", ["p8e-"], r"\bp8e-[a-zA-Z0-9]{32}\b", "«p8e-{a32}»"),
    prefix!("frameio-token", "frameio-token", ["fio-u-"], r"\bfio-u-[a-zA-Z0-9_=-]{64}", "«fio-u-{u64}»"),
    prefix!("easypost-key", "easypost-key", ["ezak"], r"\bEZ[AT]K[a-zA-Z0-9]{54}\b", "«EZAK{a54}»"),
    // ---- chat and messaging ----
    prefix!("slack-bot-token", "slack-token", ["xoxb-"], r"\bxoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24,34}", "«xoxb-{d12}-{d13}-{a24}»"),
    prefix!("slack-user-token", "slack-token", ["xoxp-"], r"\bxoxp-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32}", "«xoxp-{d12}-{d12}-{d13}-{h32}»"),
    prefix!("slack-app-token", "slack-token", ["xapp-"], r"\bxapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+", "«xapp-1-A{A10}-{d13}-{h64}»"),
    prefix!("slack-config-token", "slack-token", ["xoxe"], r"\bxoxe(?:\.xox[bp])?-\d-[A-Z0-9]{140,170}", "«xoxe.xoxp-1-{A163}»"),
    prefix!("slack-legacy-token", "slack-token", ["xoxa-", "xoxr-", "xoxs-", "xoxo-"], r"\bxox[arso]-(?:\d+-)+[a-z0-9]{8,48}", "«xoxs-{d10}-{d10}-{l32}»"),
    prefix!("slack-webhook", "slack-webhook", ["hooks.slack.com"], r"(?i)https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,80}(?:/[A-Za-z0-9+/_-]{8,60})*", "«https://hooks.slack.com/services/T{A8}/B{A10}/{a24}»"),
    prefix!("discord-webhook", "discord-webhook", ["discord"], r"(?i)https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]{60,70}", "«https://discord.com/api/webhooks/{d18}/{u68}»"),
    ctx!("discord-bot-token", "discord-token", ["discord"], r"discord", r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}", 3.5, "DISCORD_BOT_TOKEN=«M{a25}.{u6}.{u38}»"),
    prefix!("telegram-bot-token", "telegram-token", [":aa"], r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}", "«{d10}:AA{u33}»"),
    prefix!("teams-webhook", "teams-webhook", ["webhook.office.com"], r"(?i)https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[^\s\x22'<>]+", "«https://acme.webhook.office.com/webhookb2/{UUID}@{UUID}/IncomingWebhook/{h32}/{UUID}»"),
    ctx!("twilio-api-key", "twilio-key", ["twilio"], r"twilio", r"SK[0-9a-fA-F]{32}", 3.0, "TWILIO_API_KEY=«SK{h32}»"),
    ctx!("twilio-auth-token", "twilio-key", ["twilio_auth", "twilio-auth"], r"twilio[_-]auth[_-]?token", r"[0-9a-f]{32}", 3.0, "TWILIO_AUTH_TOKEN=«{h32}»"),
    prefix!("sendgrid-api-key", "sendgrid-key", ["sg."], r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", "«SG.{u22}.{u43}»"),
    prefix!("mailgun-key", "mailgun-key", ["key-"], r"\bkey-[a-f0-9]{32}\b", "«key-{h32}»"),
    prefix!("mailchimp-key", "mailchimp-key", ["-us"], r"\b[a-f0-9]{32}-us\d{1,2}\b", "«{h32}-us21»"),
    prefix!("facebook-access-token", "facebook-token", ["eaam", "eaac"], r"\bEAA[MC][A-Za-z0-9]{100,}", "«EAAM{a120}»"),
    prefix!("twitter-bearer-token", "twitter-token", ["aaaaaaaaaaaaaaaaaaaaa"], r"\bA{22}[A-Za-z0-9%]{30,}", "«AAAAAAAAAAAAAAAAAAAAAA{a80}»"),
    prefix!("mapbox-secret-token", "mapbox-token", ["sk.eyj"], r"\bsk\.eyJ[A-Za-z0-9._-]{50,}", "«sk.eyJ{u60}.{u22}»"),
    // ---- payments ----
    prefix!("stripe-secret-key", "stripe-key", ["sk_live_", "sk_test_"], r"\bsk_(?:live|test)_[A-Za-z0-9]{24,99}\b", "«sk_live_{a99}»"),
    prefix!("stripe-restricted-key", "stripe-key", ["rk_live_", "rk_test_"], r"\brk_(?:live|test)_[A-Za-z0-9]{24,99}\b", "«rk_live_{a60}»"),
    prefix!("stripe-webhook-secret", "stripe-key", ["whsec_"], r"\bwhsec_[A-Za-z0-9+/=]{32,}", "«whsec_{a32}»"),
    prefix!("square-access-token", "square-token", ["eaaa"], r"\bEAAA[A-Za-z0-9_-]{60}", "«EAAA{u60}»"),
    prefix!("square-oauth-secret", "square-token", ["sq0csp-"], r"\bsq0csp-[A-Za-z0-9_-]{43}", "«sq0csp-{u43}»"),
    prefix!("square-app-token", "square-token", ["sq0atp-"], r"\bsq0atp-[A-Za-z0-9_-]{22}", "«sq0atp-{u22}»"),
    prefix!("braintree-token", "braintree-token", ["access_token$"], r"access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}", "«access_token$production${l16}${h32}»"),
    prefix!("plaid-token", "plaid-token", ["access-sandbox-", "access-development-", "access-production-"], r"\baccess-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "«access-production-{UUID}»"),
    prefix!("flutterwave-key", "flutterwave-key", ["flwseck"], r"\bFLWSECK(?:_TEST)?-[a-h0-9]{32}-X", "«FLWSECK-{h32}-X»"),
    prefix!("razorpay-key", "razorpay-key", ["rzp_"], r"\brzp_(?:live|test)_[A-Za-z0-9]{14}\b", "«rzp_live_{a14}»"),
    prefix!("shippo-token", "shippo-token", ["shippo_"], r"\bshippo_(?:live|test)_[a-f0-9]{40}\b", "«shippo_live_{h40}»"),
    prefix!("shopify-access-token", "shopify-token", ["shpat_", "shpca_", "shppa_", "shpss_"], r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", "«shpat_{h32}»"),
    prefix!("duffel-token", "duffel-token", ["duffel_"], r"\bduffel_(?:test|live)_[A-Za-z0-9_=-]{43}", "«duffel_live_{u43}»"),
    // ---- keys and tokens by structure ----
    Spec {
        id: "private-key",
        kind: "private-key",
        class: S,
        gate: Gate::Keywords,
        keywords: &["-----begin"],
        // A whole block (on one line, or a JSON string with `\n` escapes), else from BEGIN to the
        // end of what looks like key material; the line redactor follows multi-line blocks.
        pattern: Pattern::Raw(
            r"-----BEGIN[A-Z0-9 _-]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:(?s:.){0,16384}?-----END[A-Z0-9 _-]{0,40}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,.-]*)",
            0,
        ),
        check: Check::None,
        priority: P_PREFIX,
        sample: "«-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA{b64}\\n{b64}\\n-----END OPENSSH PRIVATE KEY-----»",
    },
    prefix!("putty-private-key", "private-key", ["putty-user-key-file-"], r"PuTTY-User-Key-File-\d: .*", "«PuTTY-User-Key-File-3: ssh-ed25519 Private-Lines: 1 {b44}»"),
    prefix!("jwt", "jwt", ["eyj"], r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,600}", "«eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{u60}.{u43}»"),
    Spec {
        id: "url-password",
        kind: "url-password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["://"],
        pattern: Pattern::Raw(
            r"(?i)\b[a-z][a-z0-9+.-]{1,30}://[^\s:@/'\x22<>]{1,128}:([^\s@/'\x22<>]{1,256})@[a-z0-9.\[_-]",
            1,
        ),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "postgres://app:«{a16}»@db.internal:5432/orders?sslmode=require",
    },
    Spec {
        id: "authorization-header",
        kind: "authorization",
        class: S,
        gate: Gate::Keywords,
        keywords: &["authorization"],
        pattern: Pattern::Raw(
            r#"(?i)\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|sso-key|aws4-hmac-sha256|dpop|mac)\s+)?([^\s"',;]{6,})"#,
            1,
        ),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "GET /v1/orders HTTP/1.1 Authorization: Basic «{b32}»",
    },
    Spec {
        id: "bearer-token",
        kind: "bearer-token",
        class: S,
        gate: Gate::Keywords,
        keywords: &["bearer"],
        pattern: Pattern::Raw(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{16,})", 1),
        check: Check::Entropy(3.0),
        priority: P_CONTEXT,
        sample: "upstream call with bearer «{u40}»",
    },
    Spec {
        id: "cookie-header",
        kind: "cookie",
        class: S,
        gate: Gate::Keywords,
        keywords: &["cookie"],
        pattern: Pattern::Raw(r#"(?i)\b(?:set-)?cookie["']?\s*:\s*["']?([^\r\n"']{4,})"#, 1),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "request headers Cookie: «session={u32}; csrftoken={a32}»",
    },
    Spec {
        id: "session-id",
        kind: "session-id",
        class: S,
        gate: Gate::Keywords,
        keywords: &["sessionid", "sessid", "session_id", "session_token", "connect.sid", "sid="],
        pattern: Pattern::Raw(
            r"(?i)\b(?:jsessionid|phpsessid|asp\.net_sessionid|connect\.sid|sessionid|session_id|session_token|sid)=([A-Za-z0-9%._~+/-]{16,})",
            1,
        ),
        check: Check::Entropy(3.0),
        priority: P_CONTEXT,
        sample: "GET /cart;JSESSIONID=«{A32}» 200",
    },
    Spec {
        id: "api-key-header",
        kind: "api-key",
        class: S,
        gate: Gate::Keywords,
        keywords: &["x-api-key", "x-auth-token", "x-access-token", "api-key", "apikey", "x-goog-api-key", "ocp-apim-subscription-key"],
        pattern: Pattern::Raw(
            r#"(?i)\b(?:x-api-key|x-auth-token|x-access-token|x-goog-api-key|ocp-apim-subscription-key|api-key|apikey)["']?\s*[:=]\s*["']?([^\s"',;&]{8,})"#,
            1,
        ),
        check: Check::Assignment(2.5),
        priority: P_CONTEXT,
        sample: "curl -H 'X-API-Key: «{a32}»' https://api.internal/v1",
    },
    Spec {
        id: "cli-password-flag",
        kind: "password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["--pass", "--pwd", "--token", "--secret", "--api-key", "--apikey", "--access-key", "--secret-key", "--client-secret", "--auth-token", "-password", "-passwd"],
        pattern: Pattern::Raw(
            r"(?i)(?:^|\s)--?(?:password|passwd|pass|pwd|token|secret|api-key|apikey|access-key|secret-key|client-secret|auth-token|db-password)(?:=|\s+)['\x22]?([^\s'\x22-][^\s'\x22]*)",
            1,
        ),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "exec /usr/bin/pg_dump --host db --password=«{a14}» orders",
    },
    Spec {
        id: "mysql-password-flag",
        kind: "password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["mysql", "mariadb"],
        pattern: Pattern::Raw(r"\b(?:mysql|mysqldump|mysqladmin|mysqlsh|mariadb)\b[^\n]*?\s-p([^\s'\x22-][^\s'\x22]*)", 1),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "execve /usr/bin/mysql -u root -p«{a12}» -h db",
    },
    Spec {
        id: "sshpass-password",
        kind: "password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["sshpass"],
        pattern: Pattern::Raw(r"\bsshpass\s+-p\s*['\x22]?([^\s'\x22]+)", 1),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "sshpass -p «{a12}» ssh deploy@10.0.0.4",
    },
    Spec {
        id: "curl-user-password",
        kind: "password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["curl", "wget"],
        pattern: Pattern::Raw(
            r"\b(?:curl|wget)\b[^\n]*?\s(?:-u|--user|--http-password|--password)[\s=]+['\x22]?(?:[^\s:'\x22]+:)?([^\s'\x22]+)",
            1,
        ),
        check: Check::Assignment(0.0),
        priority: P_CONTEXT,
        sample: "running curl -sS -u admin:«{a14}» https://jenkins.internal/api/json",
    },
    Spec {
        id: "password-assignment",
        kind: "password",
        class: S,
        gate: Gate::Keywords,
        keywords: &["pass", "pwd"],
        pattern: Pattern::Raw(
            r#"(?i)\b([\w.-]{0,40}?(?:password|passwd|passphrase|passwort|pwd|pass))["']?\s{0,3}(?:=|:=|=>|:)\s{0,3}["'`]?([^\s"'`,;&<>]{1,300})"#,
            2,
        ),
        check: Check::Assignment(0.0),
        priority: P_GENERIC,
        sample: "connecting to ldap as cn=svc DB_PASSWORD=«{a12}»",
    },
    Spec {
        id: "generic-secret-assignment",
        kind: "generic-secret",
        class: S,
        gate: Gate::Keywords,
        keywords: &["secret", "token", "api_key", "api.key", "apikey", "access_key", "accesskey", "auth_key", "authkey", "private_key", "privatekey", "credential", "signing_key", "encryption_key", "client_secret"],
        pattern: Pattern::Raw(
            r#"(?i)\b([\w.-]{0,40}?(?:secret|token|api[_.-]?key|access[_.-]?key|auth[_.-]?key|private[_.-]?key|credentials?|signing[_.-]?key|encryption[_.-]?key|master[_.-]?key))["']?\s{0,3}(?:=|:=|=>|:)\s{0,3}["'`]?([^\s"'`,;&<>]{8,300})"#,
            2,
        ),
        check: Check::Assignment(3.0),
        priority: P_GENERIC,
        sample: "worker env loaded SIGNING_SECRET=«{a32}»",
    },
    // ---- personal data ----
    Spec {
        id: "email",
        kind: "email",
        class: P,
        gate: Gate::At,
        keywords: &[],
        pattern: Pattern::Raw(
            r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
            0,
        ),
        check: Check::Email,
        priority: P_CONTEXT,
        sample: "@email",
    },
    Spec {
        id: "phone-nanp",
        kind: "phone",
        class: P,
        gate: Gate::Digits(Shape::Phone),
        keywords: &[],
        pattern: Pattern::Raw(r"(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)|\b[2-9]\d{2})[ .-]?\d{3}[ .-]\d{4}\b", 0),
        check: Check::Phone,
        priority: P_CONTEXT,
        sample: "@phone-us",
    },
    Spec {
        id: "phone-international",
        kind: "phone",
        class: P,
        gate: Gate::Digits(Shape::Phone),
        keywords: &[],
        pattern: Pattern::Raw(r"\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,5}\)?){2,6}\b", 0),
        check: Check::Phone,
        priority: P_CONTEXT,
        sample: "@phone-intl",
    },
    Spec {
        id: "us-ssn",
        kind: "us-ssn",
        class: P,
        gate: Gate::Digits(Shape::Ssn),
        keywords: &[],
        pattern: Pattern::Raw(r"\b\d{3}-\d{2}-\d{4}\b", 0),
        check: Check::Ssn,
        priority: P_CONTEXT,
        sample: "@ssn",
    },
    Spec {
        id: "us-ssn-context",
        kind: "us-ssn",
        class: P,
        gate: Gate::Keywords,
        keywords: &["ssn", "social security", "social_security"],
        pattern: Pattern::Raw(r"(?i)\b(?:ssn|social[ _-]?security(?:[ _-]?(?:number|no))?)\b[^0-9\n]{0,20}?(\d{3}[ -]?\d{2}[ -]?\d{4})\b", 1),
        check: Check::Ssn,
        priority: P_CONTEXT,
        sample: "@ssn-context",
    },
    Spec {
        id: "payment-card",
        kind: "payment-card",
        class: P,
        gate: Gate::Digits(Shape::Card),
        keywords: &[],
        pattern: Pattern::Raw(
            r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{13,19})\b",
            0,
        ),
        check: Check::Luhn,
        priority: P_CONTEXT,
        sample: "@card",
    },
    Spec {
        id: "iban",
        kind: "iban",
        class: P,
        gate: Gate::Digits(Shape::Iban),
        keywords: &[],
        pattern: Pattern::Raw(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", 0),
        check: Check::Iban,
        priority: P_CONTEXT,
        sample: "@iban",
    },
];
