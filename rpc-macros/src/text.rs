//! Pure text helpers: case conversion, doc comments and token printing.
//!
//! Everything here maps strings or tokens to strings, so it is unit-tested
//! directly, without a compiler in the loop.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::{Attribute, Expr, ExprLit, Lit, Meta};

/// `get_user_by_id` -> `GetUserById`: the method part of an args struct name.
pub(crate) fn upper_camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// `HttpGateway` -> `HTTP_GATEWAY`, `HTTPServer` -> `HTTP_SERVER`: the
/// descriptor static's name.
pub(crate) fn screaming_snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // A word starts after a lowercase letter or digit, or where an
            // acronym ends (`HTTPServer`: the `S` before `erver`).
            let starts_word = prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower);
            if starts_word && prev != '_' {
                out.push('_');
            }
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// The text of the `#[doc = ".."]` attributes (`///` comments) among `attrs`,
/// with the common indentation removed, as rustdoc reads it.
pub(crate) fn doc_text(attrs: &[Attribute]) -> String {
    let joined = attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let lines: Vec<&str> = joined.lines().collect();
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let stripped: Vec<&str> = lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect();
    stripped.join("\n").trim_matches('\n').to_owned()
}

/// Prints tokens the way rustfmt writes types: `Result<i64, MathError>`, not
/// the `Result < i64 , MathError >` that `TokenStream::to_string` gives.
pub(crate) fn tokens_text(tokens: TokenStream) -> String {
    let mut out = String::new();
    let mut prev: Option<Atom> = None;
    for atom in atoms(tokens) {
        if let Some(prev) = &prev
            && space_between(prev, &atom)
        {
            out.push(' ');
        }
        match &atom {
            Atom::Word(text) | Atom::Op(text) | Atom::Group(text) => out.push_str(text),
        }
        prev = Some(atom);
    }
    out
}

/// A printable unit: spacing is decided between atoms, never inside one.
enum Atom {
    /// An identifier, literal or lifetime.
    Word(String),
    /// One operator, multi-character ones (`::`, `->`) already joined.
    Op(String),
    /// A delimited group, already printed.
    Group(String),
}

fn atoms(tokens: TokenStream) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(tree) = iter.next() {
        let atom = match tree {
            TokenTree::Ident(ident) => Atom::Word(ident.to_string()),
            TokenTree::Literal(lit) => Atom::Word(lit.to_string()),
            TokenTree::Group(group) => {
                let inner = tokens_text(group.stream());
                Atom::Group(match group.delimiter() {
                    Delimiter::Parenthesis => format!("({inner})"),
                    Delimiter::Bracket => format!("[{inner}]"),
                    Delimiter::Brace => format!("{{ {inner} }}"),
                    Delimiter::None => inner,
                })
            }
            TokenTree::Punct(punct) => {
                let c = punct.as_char();
                let joint = punct.spacing() == Spacing::Joint;
                match (c, iter.peek()) {
                    ('\'', Some(TokenTree::Ident(ident))) => {
                        let lifetime = format!("'{ident}");
                        iter.next();
                        Atom::Word(lifetime)
                    }
                    (':' | '-' | '=', Some(TokenTree::Punct(next)))
                        if joint
                            && matches!((c, next.as_char()), (':', ':') | ('-' | '=', '>')) =>
                    {
                        let op = format!("{c}{}", next.as_char());
                        iter.next();
                        Atom::Op(op)
                    }
                    _ => Atom::Op(c.to_string()),
                }
            }
        };
        atoms.push(atom);
    }
    atoms
}

fn space_between(prev: &Atom, next: &Atom) -> bool {
    match (prev, next) {
        (_, Atom::Op(op)) if op == "," || op == ";" => false,
        (Atom::Op(op), _) if matches!(op.as_str(), "," | ";" | "=" | "+" | "->" | "=>" | ":") => {
            true
        }
        (_, Atom::Op(op)) if matches!(op.as_str(), "=" | "+" | "->" | "=>") => true,
        (Atom::Word(_), Atom::Word(_)) => true,
        // `mut [u8]`, `&'a [u8]`, `dyn (Trait)`, but `Fn(u8)`.
        (Atom::Word(word), Atom::Group(_)) => {
            word.starts_with('\'')
                || matches!(word.as_str(), "mut" | "dyn" | "impl" | "const" | "as")
        }
        // `<Vec<u8> as Trait>`: a closing angle before a keyword.
        (Atom::Op(op), Atom::Word(_)) if op == ">" => true,
        (Atom::Group(_), Atom::Word(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn camel_cases_method_names() {
        assert_eq!(upper_camel_case("add"), "Add");
        assert_eq!(upper_camel_case("get_user_by_id"), "GetUserById");
        assert_eq!(upper_camel_case("log2_value"), "Log2Value");
        assert_eq!(upper_camel_case("type_"), "Type");
        assert_eq!(upper_camel_case("get_HTTP"), "GetHTTP");
    }

    #[test]
    fn screaming_snake_cases_trait_names() {
        assert_eq!(screaming_snake_case("Calculator"), "CALCULATOR");
        assert_eq!(screaming_snake_case("HttpGateway"), "HTTP_GATEWAY");
        assert_eq!(screaming_snake_case("HTTPServer"), "HTTP_SERVER");
        assert_eq!(screaming_snake_case("Calc2Service"), "CALC2_SERVICE");
        assert_eq!(screaming_snake_case("My_Service"), "MY_SERVICE");
        assert_eq!(screaming_snake_case("A"), "A");
    }

    #[test]
    fn doc_text_strips_common_indent_and_joins_lines() {
        let item: syn::ItemTrait = syn::parse_quote! {
            /// Adds two numbers.
            ///
            ///     indented code
            #[allow(dead_code)]
            /// Last line.
            trait T {}
        };
        assert_eq!(
            doc_text(&item.attrs),
            "Adds two numbers.\n\n    indented code\nLast line."
        );
    }

    #[test]
    fn doc_text_of_undocumented_item_is_empty() {
        let item: syn::ItemTrait = syn::parse_quote!(
            trait T {}
        );
        assert_eq!(doc_text(&item.attrs), "");
    }

    #[test]
    fn tokens_text_prints_types_like_rustfmt() {
        let cases = [
            (quote!(Result<i64, MathError>), "Result<i64, MathError>"),
            (quote!(Vec<Vec<u8>>), "Vec<Vec<u8>>"),
            (quote!(::std::string::String), "::std::string::String"),
            (quote!(&'a mut [u8; 4]), "&'a mut [u8; 4]"),
            (quote!(<T as Trait>::Assoc), "<T as Trait>::Assoc"),
            (quote!(fn(u8) -> u8), "fn(u8) -> u8"),
            (
                quote!(Box<dyn Fn() -> u8 + Send + 'static>),
                "Box<dyn Fn() -> u8 + Send + 'static>",
            ),
            (
                quote!(HashMap<String, (u8, u16)>),
                "HashMap<String, (u8, u16)>",
            ),
            (quote!(Option<()>), "Option<()>"),
            (quote!(&'static [u8]), "&'static [u8]"),
            (quote!(Box<dyn Fn(u8)>), "Box<dyn Fn(u8)>"),
            (quote!(*const u8), "*const u8"),
            (quote!(Iterator<Item = u8>), "Iterator<Item = u8>"),
        ];
        for (tokens, expected) in cases {
            assert_eq!(tokens_text(tokens), expected);
        }
    }
}
